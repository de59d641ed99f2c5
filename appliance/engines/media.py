"""Audio and video with ffmpeg (queue `media`), with progress from ffmpeg's progress output."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.tools import run_tool, tool_version
from appliance.errors import PermanentError

AUDIO = ("mp3", "wav", "ogg", "opus", "flac", "aac", "m4a")
VIDEO = ("mp4", "webm", "mkv", "mov", "gif")
# container -> (ffmpeg muxer, default video codec, default audio codec)
CONTAINERS: dict[str, tuple[str, str | None, str | None]] = {
    "mp3": ("mp3", None, "libmp3lame"),
    "wav": ("wav", None, "pcm_s16le"),
    "ogg": ("ogg", None, "libvorbis"),
    "opus": ("opus", None, "libopus"),
    "flac": ("flac", None, "flac"),
    "aac": ("adts", None, "aac"),
    "m4a": ("ipod", None, "aac"),
    "mp4": ("mp4", "libx264", "aac"),
    "webm": ("webm", "libvpx-vp9", "libopus"),
    "mkv": ("matroska", "libx264", "libopus"),
    "mov": ("mov", "libx264", "aac"),
    "gif": ("gif", "gif", None),
}


class MediaOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    video_codec: Literal["libx264", "libx265", "libvpx-vp9", "libvpx", "gif", "copy"] | None = None
    audio_codec: (
        Literal["aac", "libmp3lame", "libopus", "libvorbis", "flac", "pcm_s16le", "copy"] | None
    ) = None
    audio_bitrate: Annotated[int, msgspec.Meta(ge=8, le=512)] | None = None  # kbit/s
    crf: Annotated[int, msgspec.Meta(ge=0, le=63)] | None = None
    width: Annotated[int, msgspec.Meta(ge=2, le=7680)] | None = None
    height: Annotated[int, msgspec.Meta(ge=2, le=4320)] | None = None
    fps: Annotated[float, msgspec.Meta(gt=0, le=120)] | None = None


def media_duration(src: Path) -> float | None:
    done = run_tool(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=nw=1:nk=1",
            str(src),
        ],
        what="ffprobe",
    )
    try:
        return float(done.stdout.strip())
    except ValueError:
        return None


class FfmpegEngine:
    descriptor = Descriptor(
        id="ffmpeg",
        conversions=frozenset(
            {(a, b) for a in AUDIO for b in AUDIO if a != b}
            | {(v, w) for v in VIDEO for w in VIDEO if v != w and v != "gif"}
            | {(v, a) for v in VIDEO for a in AUDIO if v != "gif"}
        ),
        options=MediaOptions,
        queue="media",
        version=lambda: tool_version("ffmpeg", "-version"),
        family="media",
        cost=3.0,
        requires=("ffmpeg", "ffprobe"),
        packages=("ffmpeg",),
        last_only=frozenset((v, "gif") for v in VIDEO if v != "gif"),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: MediaOptions,
        progress: Progress,
    ) -> None:
        muxer, vcodec, acodec = CONTAINERS[dst_format]
        duration = media_duration(src)
        argv = [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(src),
            "-progress",
            "pipe:1",
            "-nostats",
            "-map_metadata",
            "-1",
        ]
        if vcodec is None:
            argv.append("-vn")
        else:
            argv += ["-c:v", options.video_codec or vcodec]
            if options.crf is not None:
                argv += ["-crf", str(options.crf)]
            if dst_format in ("mp4", "mov", "mkv"):
                argv += ["-pix_fmt", "yuv420p"]
            scale = (
                f"scale={options.width or -2}:{options.height or -2}"
                if options.width or options.height
                else None
            )
            filters = [f for f in (scale, f"fps={options.fps}" if options.fps else None) if f]
            if filters:
                argv += ["-vf", ",".join(filters)]
        if acodec is None:
            argv.append("-an")
        else:
            argv += ["-c:a", options.audio_codec or acodec]
            if options.audio_bitrate:
                argv += ["-b:a", f"{options.audio_bitrate}k"]
        argv += ["-f", muxer, str(dst)]
        self._run(argv, duration, progress)

    def _run(self, argv: list[str], duration: float | None, progress: Progress) -> None:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        assert proc.stdout is not None and proc.stderr is not None
        for raw in proc.stdout:  # key=value lines; out_time_us is how far it has got
            key, _, value = raw.decode("ascii", "replace").strip().partition("=")
            if key == "out_time_us" and duration and value.isdigit():
                progress(min(1.0, int(value) / 1e6 / duration))
        err = proc.stderr.read().decode("utf-8", "replace").strip().splitlines()[-3:]
        if proc.wait() != 0:
            raise PermanentError(
                f"ffmpeg failed: {' '.join(err) or 'unknown error'}", code="INVALID_INPUT_FILE"
            )
