from app.chat.metrics_plot import MetricsStrip
from engine.events import GenerationStats


def test_figures_and_curves_follow_stats(qtbot, themed):
    m = MetricsStrip()
    qtbot.addWidget(m)
    m.resize(700, 160)
    m.show()
    m.reset(drafting=True)
    assert m.acceptance.isVisible()
    m.add_stats(
        GenerationStats(
            generation_tokens=10,
            elapsed_s=0.5,
            ttft_s=0.1,
            generation_tps=22.5,
            acceptance_rate=0.5,
            drafted=8,
            accepted=4,
            mean_accepted_length=1.8,
            memory_gb=0.6,
            decoder_memory_gb=0.05,
        )
    )
    m.add_stats(
        GenerationStats(
            generation_tokens=30,
            elapsed_s=1.0,
            ttft_s=0.1,
            generation_tps=32.0,
            acceptance_rate=0.75,
            drafted=20,
            accepted=15,
            memory_gb=0.6,
        )
    )
    assert m.rate.value.text() == "40.0"  # 20 tokens in 0.5 s
    assert m.average.value.text() == "32.0"
    assert m.tokens.value.text() == "30"
    assert m.acceptance.value.text().startswith("75%")
    assert m.ttft.value.text() == "100 ms"
    x, y = m.plot.rate_curve.getData()
    assert list(x) == [0.5, 1.0] and list(y)[-1] == 40.0
    assert m.plot.accept_curve.isVisible()


def test_no_acceptance_without_a_drafter(qtbot, themed):
    m = MetricsStrip()
    qtbot.addWidget(m)
    m.show()
    m.reset(drafting=False)
    m.add_stats(GenerationStats(generation_tokens=5, elapsed_s=0.3, generation_tps=10))
    assert not m.acceptance.isVisible()
    assert not m.plot.accept_curve.isVisible()


def test_narrow_strip_wraps_figures(qtbot, themed):
    m = MetricsStrip()
    qtbot.addWidget(m)
    m.show()
    m.resize(400, 200)
    qtbot.waitUntil(lambda: m._columns == 3)
    m.resize(900, 200)
    qtbot.waitUntil(lambda: m._columns == 6)


def test_closing_stats_do_not_draw_a_false_drop(qtbot, themed):
    m = MetricsStrip()
    qtbot.addWidget(m)
    m.reset(drafting=False)
    m.add_stats(GenerationStats(generation_tokens=10, elapsed_s=0.5, ttft_s=0.1, generation_tps=20))
    m.finish(GenerationStats(generation_tokens=10, elapsed_s=0.55, ttft_s=0.1, generation_tps=19))
    x, y = m.plot.rate_curve.getData()
    assert len(x) == 1 and y[-1] > 0
    assert m.average.value.text() == "19.0"


def test_axes_move_in_round_steps():
    from app.chat.metrics_plot import nice_ceiling

    assert [nice_ceiling(v) for v in (0.3, 1.0, 1.01, 2.4, 3, 11, 26, 101)] == [
        0.5,
        1.0,
        2.0,
        2.5,
        5.0,
        20.0,
        50.0,
        200.0,
    ]


def test_plot_range_changes_only_at_steps(qtbot, themed):
    m = MetricsStrip()
    qtbot.addWidget(m)
    m.show()
    m.reset(drafting=False)
    ranges = []
    for i in range(1, 12):
        m.add_stats(GenerationStats(generation_tokens=10 * i, elapsed_s=0.5 * i, generation_tps=20))
        ranges.append(m.plot._ranges)
    assert ranges[0] == (1.0, 25.0)  # 0.5 s; 20 tok/s with headroom
    assert ranges[-1] == (10.0, 25.0)  # 5.5 s
    assert len(set(ranges)) == 5  # 1, 2, 2.5, 5, 10 s: not a new range per update


def test_curves_redraw_every_half_second_and_at_the_end(qtbot, themed):
    m = MetricsStrip()
    qtbot.addWidget(m)
    m.show()
    m.reset(drafting=False)
    drawn = []
    for i in range(1, 6):  # stats every 0.25 s, as the engine sends them
        st = GenerationStats(generation_tokens=5 * i, elapsed_s=0.25 * i, generation_tps=20)
        m.add_stats(st)
        x, _ = m.plot.rate_curve.getData()
        drawn.append(0 if x is None else len(x))
        assert m.tokens.value.text() == str(5 * i)  # the figures follow every update
    assert drawn == [1, 1, 3, 3, 5]
    m.finish(GenerationStats(generation_tokens=27, elapsed_s=1.3, generation_tps=20))
    assert len(m.plot.rate_curve.getData()[0]) == 6
