/* test_commands — parsing of workflow commands in step output. */
#include "agent/commands.h"
#include "common/util.h"
#include "tests/harness/check.h"

static int parse(const char *line, agent_cmd *c)
{
	return agent_cmd_parse(line, strlen(line), c);
}

int main(void)
{
	agent_cmd c;
	CHECK_INT(parse("plain output", &c), 0);
	CHECK_INT(parse(":: not a command", &c), 0);
	CHECK_INT(parse("::", &c), 0);
	CHECK_INT(parse("::::", &c), 0);
	CHECK_INT(parse("x ::add-mask::v", &c), 0);
	CHECK_INT(parse("::add mask", &c), 0);

	CHECK_INT(parse("::add-mask::hunter2", &c), 1);
	CHECK_STR(c.name, "add-mask");
	CHECK_STR(c.message, "hunter2");
	CHECK_INT(c.nprops, 0);
	agent_cmd_clear(&c);

	CHECK_INT(parse("  ::group::Build %25 things", &c), 1);
	CHECK_STR(c.name, "group");
	CHECK_STR(c.message, "Build % things");
	agent_cmd_clear(&c);

	CHECK_INT(parse("::endgroup::", &c), 1);
	CHECK_STR(c.message, "");
	agent_cmd_clear(&c);

	CHECK_INT(parse("::error file=app.js,line=10,col=15,title=Bad%2C bad%3A thing::Missing ;%0Anext line", &c), 1);
	CHECK_STR(c.name, "error");
	CHECK_INT(c.nprops, 4);
	CHECK_STR(agent_cmd_prop(&c, "file"), "app.js");
	CHECK_STR(agent_cmd_prop(&c, "line"), "10");
	CHECK_STR(agent_cmd_prop(&c, "col"), "15");
	CHECK_STR(agent_cmd_prop(&c, "title"), "Bad, bad: thing");
	CHECK(agent_cmd_prop(&c, "endLine") == NULL);
	CHECK_STR(c.message, "Missing ;\nnext line");
	agent_cmd_clear(&c);

	/* the message may itself contain "::" */
	CHECK_INT(parse("::warning::a::b", &c), 1);
	CHECK_STR(c.message, "a::b");
	agent_cmd_clear(&c);

	/* %3A stays as written in a message; an unknown escape stays too */
	CHECK_INT(parse("::notice::x%3Ay %ZZ 100%", &c), 1);
	CHECK_STR(c.message, "x%3Ay %ZZ 100%");
	agent_cmd_clear(&c);

	CHECK_INT(parse("::stop-commands::tok3n", &c), 1);
	CHECK_STR(c.name, "stop-commands");
	CHECK_STR(c.message, "tok3n");
	agent_cmd_clear(&c);
	CHECK_INT(parse("::tok3n::", &c), 1);
	CHECK_STR(c.name, "tok3n");
	agent_cmd_clear(&c);

	/* more properties than the cap: the rest are dropped, nothing overflows */
	kiln_buf b = {0};
	kiln_buf_puts(&b, "::error ");
	for (int i = 0; i < 40; i++)
		kiln_buf_printf(&b, "%sk%d=v%d", i ? "," : "", i, i);
	kiln_buf_puts(&b, "::m");
	CHECK_INT(parse(b.p, &c), 1);
	CHECK_INT(c.nprops, AGENT_CMD_MAX_PROPS);
	agent_cmd_clear(&c);
	kiln_buf_free(&b);
	return check_done();
}
