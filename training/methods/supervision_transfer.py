PHASE_CLASSES: dict = {}
