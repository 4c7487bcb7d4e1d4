/*
 * Private to jobs/: where a job's tasks come from. A built-in family is a sampler of tasks/; an
 * uploaded dataset is read from the store once per job (one copy of its arrays in memory, which
 * the sampler borrows) and checked before training starts.
 */
#ifndef METASERVE_JOBS_INTERNAL_H
#define METASERVE_JOBS_INTERNAL_H

#include "metaserve/meta/train.h"
#include "metaserve/store/store.h"

typedef struct {
    StoreDataset info;
    StoreDatasetData data; // the arrays the sampler borrows; freed after the trainer
    int loaded;
} JobsDataset;

/** Builds the sampler for cfg (caller passes it to trainer_init_with_sampler); for a dataset, ds
 *  receives the arrays, which must outlive the sampler. MS_ERR_INVALID names the problem (e.g. a
 *  missing dataset, or too few points per task for the shots). */
MsStatus jobs_build_sampler(Store *st, const TrainConfig *cfg, JobsDataset *ds, TaskSampler **out,
                            MsError *err);
/** Frees what jobs_build_sampler loaded into ds. */
void jobs_dataset_free(JobsDataset *ds);

#endif
