// Include first in every CPU kernel file: when the compiler targets AVX2 + FMA (setup.py passes
// -march=native unless NODE_EXT_PORTABLE=1), use at::vec's AVX2 implementation. Without it at::vec
// falls back to a generic one whose fmadd is a per-lane std::fma call, several times slower.
// The capability namespace (at::vec::AVX2) keeps these inline definitions apart from the
// extension's other translation units.
#pragma once

#if defined(__AVX2__) && defined(__FMA__) && !defined(CPU_CAPABILITY)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#endif
