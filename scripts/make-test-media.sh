#!/usr/bin/env bash
# Makes the pre-encoded media the synthetic SFU participants send (tests/support/sfu_client.rs):
# 2 s of VP8 (160×120, 15 fps, a keyframe every second) and 2 s of Opus (60 ms frames), from a
# generated picture and tone. Run once by hand; the outputs are committed. Needs Debian's
# vpx-tools and opus-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import math, struct, sys, wave
work = sys.argv[1]
w, h, fps, frames = 160, 120, 15, 30
with open(f"{work}/in.y4m", "wb") as f:
    f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
    for i in range(frames):
        f.write(b"FRAME\n")
        # A bar sweeping across a gradient: every frame differs, so every frame costs bytes.
        y = bytes(((x * 2 + yy) % 200 + (55 if abs(x - i * 5) < 8 else 0)) % 256 for yy in range(h) for x in range(w))
        f.write(y + bytes([128]) * (w * h // 2))
with wave.open(f"{work}/in.wav", "wb") as a:
    a.setnchannels(1); a.setsampwidth(2); a.setframerate(48000)
    a.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / 48000))) for n in range(96000)))
PY
vpxenc --codec=vp8 --ivf --kf-min-dist=15 --kf-max-dist=15 --target-bitrate=150 --quiet -o tests/media/synthetic.ivf "$work/in.y4m"
opusenc --quiet --framesize 60 --bitrate 24 "$work/in.wav" tests/media/synthetic.opus
ls -l tests/media
