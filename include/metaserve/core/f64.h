/*
 * Forced into every translation unit of the double-precision build (`-include`): selects double
 * as `real` and renames every public symbol of the numeric areas (nn/, tasks/, meta/) with an _f64
 * suffix, so that the float service code and the double code used by
 * `metaserve metagrad` and the exactness tests link into one binary. A symbol missing here shows
 * up as a duplicate-definition link error of the metaserve binary.
 */
#ifndef METASERVE_CORE_F64_H
#define METASERVE_CORE_F64_H

#define MS_REAL_DOUBLE 1

/* nn/mlp.h */
#define mlp_spec_init    mlp_spec_init_f64
#define mlp_act_parse    mlp_act_parse_f64
#define mlp_act_name     mlp_act_name_f64
#define mlp_head_parse   mlp_head_parse_f64
#define mlp_head_name    mlp_head_name_f64
#define mlp_target_cols  mlp_target_cols_f64
#define mlp_init_params  mlp_init_params_f64
#define mlp_work_init    mlp_work_init_f64
#define mlp_work_free    mlp_work_free_f64
#define mlp_work_bytes   mlp_work_bytes_f64
#define mlp_forward      mlp_forward_f64
#define mlp_forward_loss mlp_forward_loss_f64
#define mlp_loss_only    mlp_loss_only_f64
#define mlp_backward     mlp_backward_f64
#define mlp_hvp          mlp_hvp_f64
#define mlp_softmax      mlp_softmax_f64
#define mlp_forward_macs mlp_forward_macs_f64

/* nn/blas.h */
#define blas_core_name   blas_core_name_f64
#define blas_better_core blas_better_core_f64
#define blas_setup_env   blas_setup_env_f64

/* tasks/sampler.h */
#define task_sampler_create  task_sampler_create_f64
#define task_sampler_destroy task_sampler_destroy_f64
#define task_batch_init      task_batch_init_f64
#define task_batch_free      task_batch_free_f64
#define task_sample          task_sample_f64

/* tasks/dataset.h */
#define dataset_kind_name            dataset_kind_name_f64
#define dataset_kind_parse           dataset_kind_parse_f64
#define dataset_limits_default       dataset_limits_default_f64
#define dataset_pack_tasks           dataset_pack_tasks_f64
#define dataset_pack_classes         dataset_pack_classes_f64
#define dataset_pack_tasks_index     dataset_pack_tasks_index_f64
#define dataset_pack_classes_inplace dataset_pack_classes_inplace_f64
#define dataset_packed_free          dataset_packed_free_f64
#define dataset_packed_view          dataset_packed_view_f64
#define dataset_view_check           dataset_view_check_f64
#define dataset_min_points           dataset_min_points_f64
#define dataset_shots_check          dataset_shots_check_f64
#define dataset_sampler_create       dataset_sampler_create_f64

/* meta/meta.h */
#define meta_algo_parse      meta_algo_parse_f64
#define meta_algo_name       meta_algo_name_f64
#define meta_work_init       meta_work_init_f64
#define meta_work_free       meta_work_free_f64
#define meta_work_bytes      meta_work_bytes_f64
#define meta_task_grad       meta_task_grad_f64
#define meta_task_accumulate meta_task_accumulate_f64
#define meta_adapt           meta_adapt_f64
#define meta_all_finite      meta_all_finite_f64

/* meta/train.h */
#define train_config_defaults     train_config_defaults_f64
#define train_config_validate     train_config_validate_f64
#define train_config_fit          train_config_fit_f64
#define train_config_init_fits    train_config_init_fits_f64
#define trainer_init              trainer_init_f64
#define trainer_step              trainer_step_f64
#define trainer_set_parallel      trainer_set_parallel_f64
#define trainer_free              trainer_free_f64
#define trainer_lrs               trainer_lrs_f64
#define trainer_init_with_sampler trainer_init_with_sampler_f64
#define trainer_state_bytes       trainer_state_bytes_f64
#define trainer_save              trainer_save_f64
#define trainer_restore           trainer_restore_f64
#define train_limits_default      train_limits_default_f64
#define train_config_check_limits train_config_check_limits_f64

/* meta/eval.h */
#define meta_eval       meta_eval_f64
#define meta_eval_split meta_eval_split_f64

#endif
