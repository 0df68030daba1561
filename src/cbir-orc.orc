# Per-pixel kernels of the engine (noise). Generated into C by orcc at build
# time; cbir-orc-dist.[ch] are the committed pre-generated copies.

.function cbir_orc_add_s16_sat_u8
.dest 1 d uint8_t
.source 1 s uint8_t
.source 2 n int16_t
.temp 2 t
convubw t, s
addssw t, t, n
convsuswb d, t
