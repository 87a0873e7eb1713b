"""Test configuration: float64 everywhere (tests may enable x64; library modules must not), and
one persistent compile cache for the whole test session, cold at its start, under a private
XDG_CACHE_HOME (never the user's): the CLI's default cache directory is the same one, so every
program compiled once in the session (by the library or by an in-process CLI run) is loaded,
not compiled again, wherever a later test builds it again."""

import os
import shutil
import tempfile

import jax

# The first process of a run (pytest itself, or pytest-xdist's controller under `-n auto`, the
# README's command) makes the directory and removes it at the end; xdist's workers, started
# after it, inherit it through the environment and share it.
_OWNER = "JAXBOF_TESTS_CACHE" not in os.environ
if _OWNER:
    os.environ["JAXBOF_TESTS_CACHE"] = tempfile.mkdtemp(prefix="jaxbof-tests-cache-")
os.environ["XDG_CACHE_HOME"] = os.environ["JAXBOF_TESTS_CACHE"]
jax.config.update("jax_enable_x64", True)
jax.config.update(
    "jax_compilation_cache_dir", os.path.join(os.environ["XDG_CACHE_HOME"], "jaxbof", "xla")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# The longest tests (seconds on the 2-core machine) go first, so that with several workers none
# of them starts last and leaves the others idle (`--dist worksteal` hands the rest out as
# workers free up); alone, only the order changes.
FIRST = (
    "test_scale.py::test_presets_on_1_2_4_devices_give_the_rows_of_one_device",  # 145
    "test_notebooks.py::test_notebook_runs",  # 58
)


SLOW_MARK = 'slow: 5 s or more on the 2-core machine; `pytest -m "not slow"` is the fast tier'


def pytest_configure(config):
    config.addinivalue_line("markers", SLOW_MARK)


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        module, _, name = item.nodeid.partition("::")
        if name.partition("[")[0] in SLOW.get(module.rpartition("/")[2], ()):
            item.add_marker(pytest.mark.slow)

    def rank(item):
        return next((i for i, name in enumerate(FIRST) if name in item.nodeid), len(FIRST))

    items.sort(key=rank)  # stable: every other test keeps its place


# Tests of 5 s or more (measured with --durations=0 under load; about 2 s on a quiet 2-core
# machine): `pytest -m "not slow"` leaves them out, the README's command runs them.
SLOW = {
    "test_cli.py": (
        "test_console_entry_point_exit_code",
        "test_regression_sweep_end_to_end_resume_and_plot",
        "test_reproduce_ntk_concentration_quick",
        "test_spectrum_bias_and_finite_width",
        "test_spectrum_end_to_end",
        "test_spectrum_top_matrix_free_equals_dense",
        "test_sweep_end_to_end_then_resume_then_plot",
    ),
    "test_cnn.py": (
        "test_cli_sweep_pinned_names_on_one_and_two_devices_and_plot",
        "test_paper_noise_is_orthogonal_to_mu_and_labels_flip_at_rate_p",
        "test_paper_step_equals_autodiff_of_the_formula",
        "test_projected_test_error_agrees_with_the_direct_estimator",
        "test_published_code_step_equals_the_pytorch_module_transcribed",
        "test_reproduce_kou_cnn_quick_as_a_user_runs_it",
        "test_same_key_same_rows_and_padding_never_changes_a_cell",
    ),
    "test_concentration.py": (
        "test_bias_and_both_layers_concentrate_too",
        "test_deviation_follows_inverse_square_root_of_width",
        "test_rows_are_deterministic_and_skip_resumes",
    ),
    "test_data.py": (
        "test_a_signal_known_when_compiling_gives_the_bits_of_a_traced_one",
        "test_padding_is_exact_e1",
        "test_random_signal_is_uniform_on_sphere",
    ),
    "test_eigenlearning.py": ("test_prediction_equals_the_finite_n_risk_of_a_gaussian_design",),
    "test_eigsolve.py": (
        "test_analytic_products_tile_by_tile_equal_the_analytic_gram",
        "test_features_and_block_products_equal_the_jacobian_gram",
        "test_top_eigenpairs_of_any_model_and_of_the_analytic_kernel",
        "test_top_eigenpairs_of_the_empirical_ntk_match_dense",
    ),
    "test_engine.py": (
        "test_every_program_of_both_experiments_is_pure",
        "test_the_minimal_experiment_follows_its_closed_form_with_derived_defaults",
        "test_toy_chunks_and_resume_never_change_a_row",
        "test_toy_program_and_crop_are_exact",
        "test_toy_rows_follow_the_closed_form_with_several_rows_per_report",
    ),
    "test_haas_kernels.py": (
        "test_a_spike_narrower_than_the_spacing_is_a_ridge",
        "test_narrow_spikes_are_predicted_in_the_ridge_limit",
        "test_target_energies_satisfy_parseval_and_closed_forms",
    ),
    "test_haas_net.py": (
        "test_halting_at_records_changes_nothing",
        "test_the_slot_count_changes_relu_runs_only_in_the_last_bits",
        "test_rows_follow_the_schedule_and_both_activations_share_the_draws",
        "test_sgd_step_is_sgd_on_the_published_two_copy_network",
    ),
    "test_learning_curves.py": ("test_reproduce_writes_resumable_rows_a_table_and_pictures",),
    "test_metrics.py": (
        "test_linear_test_error_closed_form_vs_monte_carlo",
        "test_test_error_mc_matches_direct_monte_carlo",
    ),
    "test_model_train.py": (
        "test_autodiff_gradient_equals_handwritten_subgradient",
        "test_gram_equals_direct",
        "test_padded_problem_equals_unpadded",
        "test_training_leaves_outer_weights_unchanged",
        "test_vmapped_equals_looped",
        "test_zero_loss_and_zero_error_stops",
    ),
    "test_notebooks.py": ("test_notebook_runs",),
    "test_ntk.py": (
        "test_analytic_matches_wide_network",
        "test_antisymmetric_init_is_zero_and_odd_width_raises",
        "test_batched_equals_unbatched_and_jit",
        "test_empirical_converges_like_inverse_sqrt_width",
        "test_flax_mlp_routes_agree_and_batching",
        "test_gram_symmetric_psd",
        "test_init_two_layer_is_padding_exact",
        "test_trainable_callable_and_frozen_layers",
        "test_two_layer_routes_agree_with_jacobian",
    ),
    "test_optim.py": (
        "test_adam_converges_on_a_separable_problem_and_is_flagged_when_it_cannot",
        "test_cli_records_the_optimizer_and_refuses_another_in_the_same_out",
        "test_regression_sgd_through_optax_equals_gd_step_bit_for_bit",
        "test_sgd_through_optax_equals_the_hand_written_step_bit_for_bit",
        "test_training_on_rotated_data_shows_which_rules_are_rotation_invariant",
    ),
    "test_plots.py": ("test_plot_dir_regression_full_study",),
    "test_plugins.py": (
        "test_a_plugin_adds_a_command_of_its_own",
        "test_a_plugin_named_like_a_built_in_is_refused",
        "test_a_plugin_that_fails_to_load_is_named_and_leaves_the_others_working",
        "test_an_installed_plugin_runs_through_sweep_and_plot",
        "test_the_toy_claim_holds_on_its_rows_and_fails_on_tampered_ones",
    ),
    "test_regression.py": (
        "test_antisymmetric_init_is_zero_and_matches_model",
        "test_approx_error_matches_population_flow",
        "test_hand_gradient_equals_autodiff",
        "test_same_keys_same_rows_and_cells_independent",
        "test_schema_and_rows",
        "test_spectra_bias_convention_matches_analytic_ntk",
    ),
    "test_runner.py": (
        "test_a_busy_directory_is_refused_in_one_line",
        "test_a_corrupt_config_is_named_by_plot_and_by_a_resuming_sweep",
        "test_a_full_disk_after_training_is_one_line_too",
        "test_a_garbage_row_is_named_by_plot_and_by_a_resuming_sweep",
        "test_a_signal_stops_in_one_line_and_the_rerun_resumes",
        "test_full_disk_stops_in_one_line_and_the_rerun_loses_nothing",
    ),
    "test_scaffold.py": ("test_a_new_package_installs_sweeps_plots_and_passes_its_own_test",),
    "test_scale.py": (
        "test_devices_give_the_rows_of_one_device",
        "test_killed_process_is_recovered_by_rerunning",
        "test_presets_on_1_2_4_devices_give_the_rows_of_one_device",
        "test_second_sweep_is_refused_then_sigkill_mid_sweep_then_rerun",
        "test_sigkill_while_importing_then_rerun",
        "test_two_processes_give_the_rows_of_one",
    ),
    "test_spectra.py": ("test_quadrature_error_estimate_is_a_bound_without_slack",),
    "test_sweep.py": (
        "test_adding_cells_and_changing_engine_changes_nothing",
        "test_every_cell_once_and_converged",
        "test_gram_and_direct_sweeps_agree",
        "test_max_steps_guard_flags_runs",
        "test_padded_prepare_equals_unpadded_exactly",
        "test_sweep_equals_single_model_run",
        "test_zero_loss_rule_reaches_margin_one",
    ),
}


def pytest_unconfigure(config):
    if _OWNER:  # after every worker has finished
        shutil.rmtree(os.environ["JAXBOF_TESTS_CACHE"], ignore_errors=True)
