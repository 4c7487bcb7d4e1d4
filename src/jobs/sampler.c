/*
 * Builds a job's task sampler (jobs_internal.h): from a built-in family, or from an uploaded
 * dataset read once from the store. The dataset's arrays are held once, by the job, and borrowed by
 * the sampler; they are checked (dataset_view_check, dataset_shots_check) before training starts,
 * so a dataset too small for the requested shots fails the job at once with the reason.
 */
#include <string.h>

#include "jobs_internal.h"
#include "metaserve/tasks/dataset.h"

_Static_assert(TASK_DATASET_ID_MAX == STORE_ID_MAX, "a config names a dataset by its store id");

MsStatus jobs_build_sampler(Store *st, const TrainConfig *cfg, JobsDataset *ds, TaskSampler **out,
                            MsError *err) {
    *out = NULL;
    if (!cfg->tasks.dataset[0]) {
        MsStatus s = train_config_validate(cfg, err);
        return s == MS_OK ? task_sampler_create(out, &cfg->tasks, err) : s;
    }
    MsStatus s = store_dataset_get(st, cfg->tasks.dataset, &ds->info, &ds->data, err);
    if (s == MS_ERR_NOT_FOUND)
        return ms_fail(err, MS_ERR_INVALID, "tasks.dataset: no dataset %s", cfg->tasks.dataset);
    if (s != MS_OK) return s;
    ds->loaded = 1;
    DatasetKind kind;
    if ((s = dataset_kind_parse(ds->info.kind, &kind, err)) != MS_OK) return s;
    DatasetView v = {
        .kind = kind,
        .x_dim = ds->info.x_dim,
        .y_dim = ds->info.y_dim,
        .n_rows = ds->info.n_rows,
        .x = ds->data.x,
        .n_x = ds->data.n_x,
        .y = ds->data.y,
        .n_y = ds->data.n_y,
        .index = ds->data.index,
        .n_index = ds->data.n_index,
        .n_items = ds->info.n_items,
    };
    if ((s = dataset_view_check(&v, err)) != MS_OK) return s;
    if ((s = dataset_shots_check(&v, cfg->k_support, cfg->k_query, err)) != MS_OK) return s;
    // classes: episodes have as many classes as the model has outputs unless n_way says so
    int n_way = cfg->tasks.n_way > 0 ? cfg->tasks.n_way : cfg->sizes[cfg->n_sizes - 1];
    return dataset_sampler_create(out, &v, n_way, err);
}

void jobs_dataset_free(JobsDataset *ds) {
    if (!ds->loaded) return;
    store_dataset_data_free(&ds->data);
    store_dataset_free(&ds->info);
    memset(ds, 0, sizeof *ds);
}
