"""Library videos in Chromium: one grid tile per video (its poster, a play badge with the duration),
and a keyframe's detail playing the video from the keyframe's time, with a filmstrip that seeks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from web_factories import alpine_ready, draw_shape, htmx_settled, wait_for_job

from video_factories import pattern, solid, write_video
from vistudio.services import library, projects, videos
from vistudio.studio import Studio

pytestmark = pytest.mark.browser


def _clip(path: Path) -> Path:
    """8 s at 10 fps, 320×180, VP9 (every Chromium plays WebM): cuts at 2.0 s and 5.0 s."""
    w, h = 320, 180
    frames = (
        solid((200, 40, 40), 20, w=w, h=h) + pattern(4, 30, w=w, h=h) + solid((40, 90, 200), 30, w=w, h=h)
    )
    return write_video(path, frames, codec="libvpx-vp9")


def _current_time(page: Any) -> float:
    return float(page.get_by_test_id("video").evaluate("v => v.currentTime"))


def test_video_tile_player_and_filmstrip(
    live_server: tuple[str, Studio, Path], page: Any, shot: Callable[..., Path]
) -> None:
    from playwright.sync_api import expect

    base, studio, root = live_server
    folder = root / "holiday"
    folder.mkdir()
    _clip(folder / "beach.webm")
    draw_shape(folder / "photo.png", shape="circle", index=1)
    projects.create_project(studio, name="clips", task="library")
    library.add_roots(studio, project="clips", paths=[str(folder)])
    done = wait_for_job(studio, library.start_scan(studio, project="clips")["id"])
    assert done["status"] == "succeeded", done
    (video,) = videos.list_videos(studio, project="clips")["items"]
    frames = videos.get_video(studio, video["id"])["keyframe_items"]
    assert [f["time"] for f in frames] == [0.0, 2.0, 5.0]

    page.goto(base + "/projects/clips")
    alpine_ready(page)
    tiles = page.get_by_test_id("tile")
    expect(tiles).to_have_count(2)  # the photo and the video, once
    badge = page.get_by_test_id("video-badge")
    expect(badge).to_have_count(1)
    expect(badge).to_contain_text("00:08")
    expect(page.locator(f'[data-testid=tile][data-sample-id="{video["poster_sample_id"]}"]')).to_contain_text(
        "beach.webm"
    )
    tiles.first.scroll_into_view_if_needed()
    shot(page, "video-01-grid", full_page=False)

    # a keyframe's own address opens its detail: the video plays from the keyframe's time
    page.goto(base + f"/projects/clips?sample={frames[1]['sample_id']}")
    alpine_ready(page)
    player = page.get_by_test_id("video")
    expect(player).to_be_visible()
    page.wait_for_function(
        "() => { const v = document.querySelector('[data-testid=video]'); return v && v.readyState >= 1 }"
    )
    page.wait_for_function(
        "() => Math.abs(document.querySelector('[data-testid=video]').currentTime - 2.0) < 0.2"
    )
    assert abs(_current_time(page) - 2.0) < 0.2
    strip = page.get_by_test_id("filmstrip-frame")
    expect(strip).to_have_count(3)
    expect(strip.nth(1)).to_have_attribute("aria-current", "true")
    expect(strip.nth(2)).to_contain_text("00:05.0")
    shot(page, "video-02-detail", full_page=False)

    # the filmstrip seeks (and plays: the time moves on from there)
    strip.nth(2).click()
    page.wait_for_function("() => document.querySelector('[data-testid=video]').currentTime >= 4.9")
    assert _current_time(page) >= 4.9
    expect(strip.nth(2)).to_have_attribute("aria-current", "true")
    htmx_settled(page)
    page.get_by_test_id("video").evaluate("v => v.pause()")
    shot(page, "video-03-seeked", full_page=False)

    # the video's file is served with Range (what the player asked for)
    r = page.request.get(base + video["file_url"], headers={"Range": "bytes=0-15"})
    assert r.status == 206 and r.body() == (folder / "beach.webm").read_bytes()[:16]
