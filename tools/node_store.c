/* The stores flotilla-node can run on, by name (--store). A new store
 * implements struct node_store_ops and is added to the table. */
#include "tools/node_store.h"

#include <stddef.h>
#include <string.h>

static const struct node_store_ops *const node_store_table[] = {
    &node_store_memory_ops,
};

const struct node_store_ops *node_store_find(const char *name)
{
	for (size_t i = 0; i < sizeof(node_store_table) / sizeof(node_store_table[0]); i++)
		if (strcmp(node_store_table[i]->name, name) == 0)
			return node_store_table[i];
	return NULL;
}
