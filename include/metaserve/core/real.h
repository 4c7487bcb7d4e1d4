/*
 * The scalar type of the numeric core (nn/, tasks/, meta/). The service is built with float; a
 * double-precision build of the same sources exists for exactness tests and for
 * `metaserve metagrad`. A double translation unit is compiled with `-include
 * metaserve/core/f64.h`, which defines MS_REAL_DOUBLE and renames every public numeric symbol
 * so that both builds can live in one binary.
 *
 * Accumulations of losses and finite-difference sums are done in double in either build.
 */
#ifndef METASERVE_CORE_REAL_H
#define METASERVE_CORE_REAL_H

#ifdef MS_REAL_DOUBLE
typedef double real;
#define REAL_NAME "f64"
#else
typedef float real;
#define REAL_NAME "f32"
#endif

#endif
