# Per-pixel kernels of the engine (noise). Generated into C by orcc at build
# time; cbir-orc-dist.[ch] are the committed pre-generated copies
# (regenerate with scripts/update-orc-dist.sh or `ninja update-orc-dist`).

# The kernels work in place (d is read and written), so no restrict
# pointers alias.

# d = saturate_u8 (d + n): Gaussian noise on GRAY8 (n = rounded noise).
.function cbir_orc_add_s16_sat_u8
.dest 1 d uint8_t
.source 2 n int16_t
.temp 2 t
convubw t, d
addssw t, t, n
convsuswb d, t

# d = (d & ~m) | v: salt-and-pepper on GRAY8 (m = 0xff where a pixel is hit,
# v = its new value, 0 or 0xff, and 0 where m is 0).
.function cbir_orc_blend_u8
.dest 1 d uint8_t
.source 1 m uint8_t
.source 1 v uint8_t
.temp 1 t
andnb t, m, d
orb d, t, v

# d = min (max (d + n, lo), hi): Gaussian noise on float images in [0,1].
.function cbir_orc_add_clip_f32
.dest 4 d float
.source 4 n float
.floatparam 4 lo
.floatparam 4 hi
.temp 4 t
addf t, d, n
maxf t, t, lo
minf d, t, hi
