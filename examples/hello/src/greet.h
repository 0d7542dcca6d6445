#ifndef GREET_H
#define GREET_H
#include <stddef.h>
/* Writes a greeting for `name` into buf; returns its length. */
int greet(char *buf, size_t size, const char *name);
#endif
