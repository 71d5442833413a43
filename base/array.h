/* Growing arrays: capacity doubles to the peak need and then stays.
 *
 * Running out of memory is an operating condition, not a bug: array_grow()
 * returns NULL and leaves the array as it was, and the caller turns that
 * into -ENOMEM (or refuses the work that needed the room). */
#ifndef BASE_ARRAY_H
#define BASE_ARRAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Room for at least need items of item_size bytes in items (of *cap items
 * now; NULL when *cap is 0). Capacity starts at cap_first and doubles.
 * Returns the array (moved, perhaps), with *cap updated; or NULL when the
 * memory could not be had, with items and *cap unchanged. */
static inline void *array_grow(void *items, uint32_t *cap, uint32_t need, size_t item_size,
			       uint32_t cap_first)
{
	uint64_t cap_new = *cap ? *cap : (cap_first ? cap_first : 1);
	void *p;

	if (need <= *cap)
		return items;
	while (cap_new < need)
		cap_new *= 2;
	if (cap_new > UINT32_MAX || cap_new > SIZE_MAX / item_size)
		return NULL;
	p = realloc(items, (size_t)cap_new * item_size);
	if (p == NULL)
		return NULL;
	*cap = (uint32_t)cap_new;
	return p;
}

#endif /* BASE_ARRAY_H */
