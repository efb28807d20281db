from app.metrics_plot import MetricsStrip
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
