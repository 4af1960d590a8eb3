#ifndef CCR_CARES_SHIM_H
#define CCR_CARES_SHIM_H
// c-ares (1.18): its API is already non-variadic, so this header only brings it in. The DNS
// constants the resolver needs (types A and AAAA, class IN) are spelled in Swift, not taken from
// <arpa/nameser.h>.
#include <ares.h>
#endif
