"""Small pieces every tool and the trainer share, kept free of heavy imports: one-line
errors and Ctrl-C handling for command-line tools (:mod:`common.cli`), progress reporting
fit for terminals and log files (:mod:`common.progress`)."""
