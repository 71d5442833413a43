/* Zipfian ranks and their scattering over the key space (load_zipf.h).
 *
 * Gray's method inverts an approximation of the Zipfian CDF: ranks 0 and 1
 * are decided exactly from u * zeta(n), and the tail follows
 *     rank = n * (eta * u - eta + 1)^alpha
 * with eta = (1 - (2 / n)^(1 - theta)) / (1 - zeta(2) / zeta(n)), which
 * matches the exact CDF at ranks 1 and n - 1. */
#include "tools/load_zipf.h"

#include <errno.h>
#include <math.h>

__extension__ typedef unsigned __int128 load_zipf_u128;

/* Kahan-compensated sum of i^-theta for i = 1..m, smallest terms first. */
static double load_zipf_zeta_exact(uint64_t m, double theta)
{
	double sum = 0, carry = 0;

	for (uint64_t i = m; i >= 1; i--) {
		double term = pow((double)i, -theta) - carry;
		double next = sum + term;

		carry = (next - sum) - term;
		sum = next;
	}
	return sum;
}

double load_zipf_zeta(uint64_t n, double theta)
{
	uint64_t m = n < LOAD_ZIPF_EXACT_MAX ? n : LOAD_ZIPF_EXACT_MAX;
	double head = load_zipf_zeta_exact(m, theta);
	double a = (double)m, b = (double)n, integral, ends, d1, d3;

	if (n == m)
		return head;
	/* Euler-Maclaurin for f(x) = x^-theta over [m, n]:
	 *   sum f(i), i = m..n = integral + (f(m) + f(n)) / 2
	 *                        + (f'(n) - f'(m)) / 12 - (f'''(n) - f'''(m)) / 720 + ...
	 * f(m) is already in head, so it comes off again. At m = 10^6 the next
	 * term is below 10^-30 of the sum. */
	integral = (pow(b, 1 - theta) - pow(a, 1 - theta)) / (1 - theta);
	ends = (pow(a, -theta) + pow(b, -theta)) / 2;
	d1 = -theta * (pow(b, -theta - 1) - pow(a, -theta - 1));
	d3 = -theta * (theta + 1) * (theta + 2) * (pow(b, -theta - 3) - pow(a, -theta - 3));
	return head + integral + ends + d1 / 12 - d3 / 720 - pow(a, -theta);
}

int load_zipf_init(struct load_zipf *zipf, uint64_t n, double theta)
{
	double zeta_2;

	if (n == 0 || !(theta >= LOAD_ZIPF_THETA_MIN && theta <= LOAD_ZIPF_THETA_MAX))
		return -EINVAL;
	zipf->n = n;
	zipf->theta = theta;
	zipf->alpha = 1 / (1 - theta);
	zipf->zeta_n = load_zipf_zeta(n, theta);
	zipf->half_pow_theta = pow(0.5, theta);
	zeta_2 = 1 + zipf->half_pow_theta;
	/* With n <= 2 the exact cases cover every draw (and eta would be 0/0). */
	zipf->eta =
	    n <= 2 ? 0 : (1 - pow(2.0 / (double)n, 1 - theta)) / (1 - zeta_2 / zipf->zeta_n);
	return 0;
}

uint64_t load_zipf_rank(const struct load_zipf *zipf, double u)
{
	double uz, rank;

	if (!(u > 0)) /* Also NaN. */
		u = 0;
	if (u >= 1)
		u = nextafter(1, 0);
	uz = u * zipf->zeta_n;
	if (uz < 1 || zipf->n == 1)
		return 0;
	if (uz < 1 + zipf->half_pow_theta || zipf->n == 2)
		return 1;
	rank = (double)zipf->n * pow(zipf->eta * u - zipf->eta + 1, zipf->alpha);
	if (!(rank >= 0))
		return 0;
	if (rank >= (double)(zipf->n - 1))
		return zipf->n - 1;
	return (uint64_t)rank;
}

static uint64_t load_zipf_gcd(uint64_t a, uint64_t b)
{
	while (b != 0) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* splitmix64's finalizer: spreads the seed's bits. */
static uint64_t load_zipf_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void load_zipf_scatter_init(struct load_zipf_scatter *scatter, uint64_t n, uint64_t seed)
{
	uint64_t m;

	scatter->n = n;
	scatter->offset = n == 0 ? 0 : load_zipf_mix(seed) % n;
	if (n <= 1) {
		scatter->multiplier = 1;
		return;
	}
	/* Start near n times the golden ratio's fraction, so neighbouring ranks
	 * land far apart, then step to the next value coprime to n. For a 64-bit
	 * n the coprimes are at most a few hundred apart, and the walk is
	 * bounded by n anyway (it wraps to 1, which is coprime). */
	m = (uint64_t)((double)n * 0.6180339887498949) + load_zipf_mix(seed + 1) % 64;
	m %= n;
	for (uint64_t steps = 0; steps < n; steps++) {
		if (m != 0 && load_zipf_gcd(m, n) == 1)
			break;
		m = (m + 1) % n;
	}
	scatter->multiplier = m == 0 ? 1 : m;
}

uint64_t load_zipf_scatter(const struct load_zipf_scatter *scatter, uint64_t rank)
{
	load_zipf_u128 x = (load_zipf_u128)rank * scatter->multiplier + scatter->offset;

	return (uint64_t)(x % scatter->n);
}
