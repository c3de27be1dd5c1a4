/* Subcommand entry points: argv[0] is the subcommand name. Each returns
 * the process exit code (0 ok, 1 failure, 2 usage error). */
#ifndef STEM_TOOL_CMDS_H
#define STEM_TOOL_CMDS_H

int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
