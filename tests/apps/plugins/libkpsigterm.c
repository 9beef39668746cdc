/*
 * A query plugin whose init sends its process SIGTERM (tests/integ/
 * test_sighook.py): the signal comes while kprof's code runs (it loads
 * plugins as its own work), so kprof's handler of a signal left to its
 * default action (KOTOBA_PROFILE_SIGNALS=1) defers it to the end of that
 * work, then ends the trace and lets it kill. The plugin declines (NULL).
 */
#include <signal.h>
#include <unistd.h>

const void *kprof_query_plugin_init(const void *host);

const void *kprof_query_plugin_init(const void *host)
{
	(void)host;
	kill(getpid(), SIGTERM);
	return 0;
}
