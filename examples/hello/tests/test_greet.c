#include <stdio.h>
#include <string.h>

#include "../src/greet.h"

static int failed;

static void expect(const char *name, const char *want)
{
	char buf[128];
	greet(buf, sizeof buf, name);
	if (strcmp(buf, want) != 0) {
		printf("FAIL: greet(%s) = \"%s\", want \"%s\"\n", name ? name : "NULL", buf, want);
		failed++;
	} else {
		printf("ok: greet(%s)\n", name ? name : "NULL");
	}
}

int main(void)
{
	expect("kiln", "Hello, kiln!");
	expect("", "Hello, world!");
	expect(NULL, "Hello, world!");
	return failed ? 1 : 0;
}
