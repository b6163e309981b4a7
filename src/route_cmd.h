/*
 * `lexora route`: the automatic router from the command line (routing/analyzer.h).
 *   lexora route [--config FILE | --model FILE] [--explain]   JSONL on stdin (a chat request body, or
 *       {"prompt": "..."}), one JSON line out per line in: {"route", "model", "confidence", "reason"}
 *   lexora route --eval LABELLED.jsonl [--config FILE | --model FILE] [--min-accuracy A] [--min-recall R]
 *       accuracy, per-class precision and recall, the confusion matrix; exit 1 under a given bar
 *   lexora route --train LABELLED.jsonl --out FILE [--bits N] [--epochs N]
 *       trains a model file (routing/classifier.h) on the labelled lines
 * A labelled line is an input line with "label": "<class>". Without --config or --model the shipped model
 * decides (no rules; "model" is null). Exit codes: 0 ok, 1 a line could not be read or a bar was missed,
 * 2 bad command line, config or model file.
 */
#ifndef LX_ROUTE_CMD_H
#define LX_ROUTE_CMD_H

/* argv[0] is "route". */
int lx_route_command(int argc, char **argv);

#endif
