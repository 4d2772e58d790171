/* serve.h: `beeorm serve`, the HTTP server for Prometheus and people (serve.c). */
#ifndef BEE_CLI_SERVE_H
#define BEE_CLI_SERVE_H

extern const char serve_usage[];

/* Runs `beeorm serve ARGS` (argv: the arguments after "serve"); returns the exit code. */
int serve_main(int argc, char **argv);

#endif
