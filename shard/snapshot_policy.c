/* When a group snapshots on its own: see snapshot_policy.h. */
#include "shard/snapshot_policy.h"

bool snapshot_policy_is_due(const struct snapshot_policy *policy, uint64_t entries_count,
			    uint64_t applied_bytes, uint64_t snapshot_size)
{
	bool floor_met = (policy->entries > 0 && entries_count >= policy->entries) ||
			 (policy->bytes > 0 && applied_bytes >= policy->bytes);
	/* L * 100 >= S * p, as L >= S * p / 100 rounded up, computed in whole
	 * hundreds of S and then the rest: no overflow while S is below 2^64 / 11
	 * (p is at most SNAPSHOT_POLICY_RATIO_PERCENT_MAX). */
	uint64_t ratio_bytes = snapshot_size / 100 * policy->ratio_percent +
			       (snapshot_size % 100 * policy->ratio_percent + 99) / 100;

	return floor_met && applied_bytes >= ratio_bytes;
}
