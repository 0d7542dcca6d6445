/*
 * cas_internal — what manifest.c needs from the store beyond cas.h: where
 * the store keeps its own files, for the per-target stat caches of restore.
 */
#ifndef KILN_CAS_INTERNAL_H
#define KILN_CAS_INTERNAL_H

#include "common/cas.h"

/* The store's directory (ROOT/cas); borrowed. */
const char *kiln_cas_dir(const kiln_cas *cas);

#endif
