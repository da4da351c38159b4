/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The program's hashes: multiplicative hashing with HASH_MUL32 (ironpost_common.h, where user space
 * reads it), the bucket its top bits.
 */
#ifndef IRONPOST_HASH_H
#define IRONPOST_HASH_H

#include "ironpost_common.h"

/* 2^64 / the golden ratio: folds the two halves of a 16-byte address together (sketch.h). */
#define HASH_MUL64 0x9E3779B97F4A7C15ULL

/* The bucket of a multiplicative hash h among 2^bits: its top bits, the ones every bit of the
 * key reaches. */
static __always_inline __u32 hash_bucket(__u32 h, __u32 bits)
{
	return h >> (32 - bits);
}

/* hash_32() of ironpost_tui/kernel/abi.py: EXACT4's and ADDR_FILTER's buckets. */
static __always_inline __u32 hash_32(__u32 x, __u32 bits)
{
	return hash_bucket(x * HASH_MUL32, bits);
}

#endif /* IRONPOST_HASH_H */
