/* Key choice for flotilla-load: a Zipfian rank generator (Gray et al.,
 * "Quickly Generating Billion-Record Synthetic Databases", SIGMOD 1994) and
 * a permutation that scatters ranks over the key space, so that the hottest
 * keys do not all land in the same Raft group.
 *
 * Rank r (0-based) is drawn with probability (r + 1)^-theta / zeta(n, theta),
 * where zeta(n, theta) = sum of i^-theta for i = 1..n. Setup costs at most
 * LOAD_ZIPF_EXACT_MAX power evaluations; the rest of zeta comes from the
 * Euler-Maclaurin formula. Drawing is O(1) and needs no state: the caller
 * passes a uniform number, so one generator serves many threads. */
#ifndef TOOLS_LOAD_ZIPF_H
#define TOOLS_LOAD_ZIPF_H

#include <stdint.h>

#define LOAD_ZIPF_EXACT_MAX 1000000 /* Terms of zeta summed one by one. */
#define LOAD_ZIPF_THETA_MIN 0.01
#define LOAD_ZIPF_THETA_MAX 0.9999 /* Gray's method needs theta < 1. */

struct load_zipf {
	uint64_t n; /* Ranks 0..n-1. */
	double theta;
	double alpha; /* 1 / (1 - theta) */
	double zeta_n;
	double eta;
	double half_pow_theta; /* 0.5^theta: the draw that picks rank 1. */
};

/* Prepare ranks 0..n-1 with skew theta. Returns 0, or -EINVAL when n is 0
 * or theta is outside LOAD_ZIPF_THETA_MIN..LOAD_ZIPF_THETA_MAX. */
int load_zipf_init(struct load_zipf *zipf, uint64_t n, double theta);

/* The rank for a uniform draw u in [0, 1); values outside are clamped. */
uint64_t load_zipf_rank(const struct load_zipf *zipf, double u);

/* zeta(n, theta): exact up to LOAD_ZIPF_EXACT_MAX terms, then approximated
 * (relative error below 1e-12). */
double load_zipf_zeta(uint64_t n, double theta);

/* A bijection of 0..n-1 (n > 0) onto itself, cheap and well mixed: an affine
 * map modulo n with a multiplier coprime to n. The same n and seed give the
 * same permutation. */
struct load_zipf_scatter {
	uint64_t n;
	uint64_t multiplier;
	uint64_t offset;
};

void load_zipf_scatter_init(struct load_zipf_scatter *scatter, uint64_t n, uint64_t seed);
uint64_t load_zipf_scatter(const struct load_zipf_scatter *scatter, uint64_t rank);

#endif /* TOOLS_LOAD_ZIPF_H */
