from qauvern_hpc.accounting.attribution import SessionUsage, attribute, attribute_job


def _s(
    mode: str = "batch",
    state: str = "closed",
    elapsed: float | None = None,
    q: tuple[float | None, ...] = (),
    st: tuple[str, ...] = (),
) -> SessionUsage:
    return SessionUsage("s1", mode, state, elapsed, q, st or ("Completed",) * len(q))


def test_batch_is_the_sum_of_job_quantum_time_including_failed_and_cancelled() -> None:
    a = attribute(_s(q=(4.0, 2.5, 1.0), st=("Completed", "Failed", "Cancelled")))
    assert a.quantum_seconds == 7.5 and a.final


def test_dedicated_is_wall_clock_not_job_time() -> None:
    a = attribute(_s("dedicated", elapsed=30.0, q=(4.0,)))
    assert a.quantum_seconds == 30.0 and a.final


def test_open_session_or_running_job_or_missing_usage_is_pending() -> None:
    assert not attribute(_s(state="active", q=(1.0,))).final
    assert not attribute(_s(q=(1.0,), st=("Running",))).final
    assert not attribute(_s(q=(1.0, None))).final
    assert attribute(_s(q=(1.0, None))).quantum_seconds == 1.0
    assert not attribute(_s("dedicated", state="inactive", elapsed=5.0)).final


def test_job_total_over_resources() -> None:
    a = attribute_job([_s(q=(3.0,)), _s("dedicated", elapsed=10.0)])
    assert a.quantum_seconds == 13.0 and a.final
    assert attribute_job([]).quantum_seconds == 0.0 and attribute_job([]).final
    assert not attribute_job([_s(q=(3.0,)), _s(state="open")]).final
