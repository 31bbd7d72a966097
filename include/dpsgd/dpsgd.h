/*
 * dpsgd.h: the whole public API of libdpsgd, one header per module.
 *
 * Ownership: functions borrow their pointer arguments; handles returned
 * through out-parameters are owned by the caller and freed by the matching
 * _destroy/_close (each accepts NULL). Strings returned by the library
 * (dp_last_error, dp_status_str) stay owned by the library.
 */
#ifndef DPSGD_H
#define DPSGD_H
#include <stddef.h>
#include <stdint.h>
#include "status.h"
#include "version.h"
#include "pums.h"
#include "synth.h"
#include "dataset.h"
#include "mlp.h"
#include "dp.h"
#include "accountant.h"
#include "comm.h"
#include "ledger.h"
#include "source.h"
#include "csv.h"
#include "prep.h"
#include "train.h"
#include "checkpoint.h"
#include "model.h"
#include "eval.h"
#endif
