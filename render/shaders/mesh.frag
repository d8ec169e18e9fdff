#version 330 core
// Hand mesh fragment shader for render.renderer: Lambert diffuse + Blinn-Phong highlight
// from one directional light, plus ambient light; output gamma 2.2 like pyrender's.
// Much cheaper per fragment than pyrender's PBR shader under Mesa's software rasteriser.
struct DirectionalLight {
    vec3 color;
    float intensity;
    vec3 direction;
};

uniform DirectionalLight directional_lights[MAX_DIRECTIONAL_LIGHTS];
uniform int n_directional_lights;
uniform vec3 ambient_light;
uniform vec3 cam_pos;

in vec3 frag_position;
in vec3 frag_normal;
in vec3 albedo;

out vec4 frag_color;

const float INV_PI = 0.31830988618;
const float SPECULAR = 0.06;
const float SHININESS = 24.0;

void main()
{
    vec3 n = normalize(frag_normal);
    vec3 v = normalize(cam_pos - frag_position);
    vec3 color = albedo * ambient_light;
    for (int i = 0; i < n_directional_lights; i++) {
        vec3 l = -normalize(directional_lights[i].direction);
        vec3 radiance = directional_lights[i].intensity * directional_lights[i].color;
        float nl = max(dot(n, l), 0.0);
        float nh = max(dot(n, normalize(l + v)), 0.0);
        color += radiance * nl * (albedo * INV_PI + SPECULAR * pow(nh, SHININESS));
    }
    frag_color = vec4(clamp(pow(color, vec3(1.0 / 2.2)), 0.0, 1.0), 1.0);
}
