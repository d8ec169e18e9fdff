#version 330 core
// Hand mesh vertex shader for render.renderer: position, normal and colour per vertex.
// Attribute locations and the uniforms M, V, P follow pyrender's conventions.
layout(location = 0) in vec3 position;
layout(location = NORMAL_LOC) in vec3 normal;
layout(location = COLOR_0_LOC) in vec4 color_0;
layout(location = INST_M_LOC) in mat4 inst_m;

uniform mat4 M;
uniform mat4 V;
uniform mat4 P;

out vec3 frag_position;
out vec3 frag_normal;
out vec3 albedo;

void main()
{
    mat4 model = M * inst_m;  // a rigid pose: rotating normals needs no inverse-transpose
    vec4 world = model * vec4(position, 1.0);
    gl_Position = P * V * world;
    frag_position = world.xyz;
    frag_normal = mat3(model) * normal;
    albedo = pow(color_0.rgb, vec3(2.2));  // vertex colours are display (gamma) values; shade in linear
}
