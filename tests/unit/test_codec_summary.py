"""The codec step's one-paragraph summary reads right for one point and for several."""

from __future__ import annotations

from vidgen_core.codec.evaluate import _summary

METRICS = {"codec_bpp_min": 0.056, "codec_bpp_max": 0.614, "codec_psnr_min": 17.79, "codec_psnr_max": 23.71,
           "codec_unquantised_psnr": 23.72}
MAIN = {"bd_rate": 2.2, "bd_metric": -6.03, "overlap": (19.0, 23.7)}


def gap(bpp: float, delta_db: float, anchor_range: str = "inside") -> dict:
    return {"bpp": bpp, "delta_db": delta_db, "anchor_range": anchor_range}


def test_one_winning_point_gives_one_figure_and_several_losing_points_a_range() -> None:
    text = _summary(METRICS, MAIN, [gap(0.161, 0.84), gap(0.206, -2.7), gap(0.614, -11.5), gap(0.056, float("nan"), "below")],
                    "x264 veryslow yuv420p")
    assert "BD-rate vs x264 veryslow yuv420p: +2.2 % (BD-PSNR -6.03 dB over 19.0-23.7 dB)" in text
    assert "loses at 0.206, 0.614 bpp (by 2.7-11.5 dB)" in text
    assert "it wins at 0.161 bpp (by 0.8 dB)" in text  # not "by 0.8-0.8 dB"
    assert "1 vidgen point(s) (0.056 bpp) lie below the lowest rate" in text
