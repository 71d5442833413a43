/* Little-endian integers in byte buffers: every on-disk and on-wire format of
 * Flotilla is little-endian, whatever the host's order. The buffers need no
 * alignment. */
#ifndef BASE_LE_H
#define BASE_LE_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LE_SWAP16(v) __builtin_bswap16(v)
#define LE_SWAP32(v) __builtin_bswap32(v)
#define LE_SWAP64(v) __builtin_bswap64(v)
#else
#define LE_SWAP16(v) (v)
#define LE_SWAP32(v) (v)
#define LE_SWAP64(v) (v)
#endif

static inline void le_put16(uint8_t *p, uint16_t v)
{
	v = LE_SWAP16(v);
	memcpy(p, &v, sizeof(v));
}

static inline void le_put32(uint8_t *p, uint32_t v)
{
	v = LE_SWAP32(v);
	memcpy(p, &v, sizeof(v));
}

static inline void le_put64(uint8_t *p, uint64_t v)
{
	v = LE_SWAP64(v);
	memcpy(p, &v, sizeof(v));
}

static inline uint16_t le_get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return LE_SWAP16(v);
}

static inline uint32_t le_get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return LE_SWAP32(v);
}

static inline uint64_t le_get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return LE_SWAP64(v);
}

#endif /* BASE_LE_H */
