/*
 * `lexora usage [--config FILE] [--since DATE] [--by user|model|day|gateway] [--gateway ID]`: a table of
 * the usage ledger named by the config (usage.db_path opened read-only, or the PostgreSQL database of
 * usage.postgres_url), every gateway's rows or one gateway's, so it may run beside the gateways.
 * Exit codes as the rest of the command line: 0 ok, 1 the ledger cannot be opened or read,
 * 2 a bad command line or config.
 */
#ifndef LX_USAGE_CMD_H
#define LX_USAGE_CMD_H

/* argv[0] is "usage". default_config is used when neither --config nor $LEXORA_CONFIG is given. */
int lx_usage_command(int argc, char **argv, const char *default_config);

/* `lexora experiments report NAME [--config FILE] [--since DATE] [--metric M]`: the experiment report
 * (observe/exp_report.h) from the same ledger, every gateway's rows. argv[0] is "experiments". */
int lx_experiments_command(int argc, char **argv, const char *default_config);

#endif
