"""A generated slide lecture with known truth, for testing slide-change detection.

Real lecture recordings do not come with exact slide-change times, so this module draws
one with ffmpeg: 8 slides of text, mostly hard cuts, one cross-fade and one fade through
black, plus what a detector must ignore: a talking-head inset that never stops moving,
a cursor wandering over some slides and a video playing inside one slide. The truth is
computed from the same definition that draws the video, so it is exact to the frame.

Usage: python tests/e2e/slide_lecture.py OUT_DIR   (writes slides.mp4 and truth.json)
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

W, H, FPS = 1280, 720, 25
FADE = 1.0  # seconds of overlap of each fade
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
ONSCREEN_ONLY_WORD = "Zephyrine"

# kind: how the slide arrives ("cut", "fade" or "fadeblack"); the first slide is a cut at 0.
# seconds: the slide's clip length, from its arrival to the next one's; a fade overlaps
# the two clips by FADE, as in ffmpeg's xfade.
# extra: "cursor" (a moving pointer) or "video" (a clip playing in the slide body).
SLIDES = [
    {"title": "Sampling and the Nyquist Rate", "seconds": 9, "kind": "cut", "bullets": [
        "A signal is measured at regular intervals",
        "The rate must exceed twice the bandwidth",
        "Audio compact discs sample at 44.1 kHz"]},
    {"title": "Aliasing in Practice", "seconds": 7, "kind": "cut", "extra": "cursor", "bullets": [
        "High frequencies fold back into the band",
        "Wagon wheels seem to spin backwards",
        "Filter before sampling, never after"]},
    {"title": "Quantization Noise", "seconds": 12, "kind": "fade", "bullets": [
        "Each sample is rounded to a fixed level",
        "The error behaves like white noise",
        "Every extra bit gains about six decibels",
        "Dither trades distortion for noise"]},
    {"title": "The Discrete Fourier Transform", "seconds": 10, "kind": "cut", "extra": "cursor", "bullets": [
        "Turns a block of samples into frequencies",
        f"{ONSCREEN_ONLY_WORD} coefficients converge",
        "The fast algorithm needs N log N steps"]},
    {"title": "Window Functions", "seconds": 13, "kind": "cut", "extra": "video", "bullets": [
        "Blocks have sharp edges",
        "Edges smear the spectrum",
        "Hann and Hamming taper them"]},
    {"title": "Filter Design Basics", "seconds": 8, "kind": "fadeblack", "extra": "cursor", "bullets": [
        "Finite impulse response filters are stable",
        "Recursive filters are cheaper but can ring",
        "Specify the passband, stopband and ripple"]},
    {"title": "Reconstruction and Interpolation", "seconds": 6, "kind": "cut", "bullets": [
        "A low-pass filter rebuilds the waveform",
        "Oversampling eases the analog filter",
        "Linear interpolation is rarely enough"]},
    {"title": "Summary and Next Steps", "seconds": 7, "kind": "cut", "template": "bar", "bullets": [
        "Sample fast enough and filter first",
        "Read chapter four before the next lecture",
        "Try the exercises on the course page"]},
]

INSET = (240, 180, W - 240 - 20, H - 180 - 20)  # w, h, x, y of the talking head
CLIP = (400, 225, 800, 250)  # w, h, x, y of the video inside a slide


def timeline():
    """Where each slide sits on the final timeline, walking it as the filter graph will:
    a cut appends the slide, a fade overlaps it with the previous one by FADE seconds.
    Returns (total seconds, [(start, fade_end or None, end)] per slide)."""
    spans, length = [], 0.0
    for slide in SLIDES:
        if slide["kind"] == "cut" or not spans:
            spans.append([length, None])
            length += slide["seconds"]
        else:
            spans.append([length - FADE, length])
            length += slide["seconds"] - FADE
    ends = [s[0] for s in spans[1:]] + [length]
    return length, [(start, fade_end, end) for (start, fade_end), end in zip(spans, ends)]


def truth():
    """The expected changes: each slide's arrival. For a cut, `at` is the new slide's
    first frame; for a fade, the picture moves from the old slide at `at` to the new
    one at `fade_end` (the first frame showing only the new slide)."""
    total, spans = timeline()
    changes = [{"at": start, "title": s["title"], "kind": s["kind"], "fade_end": fade_end}
               for s, (start, fade_end, _) in zip(SLIDES, spans)]
    return {"duration": total, "changes": changes}


def _text(tmp: Path, name: str, text: str) -> str:
    """Text goes through a file so titles never need drawtext escaping."""
    path = tmp / name
    path.write_text(text)
    return str(path)


def _slide_png(tmp: Path, i: int, slide: dict) -> Path:
    """One slide as a still picture; the video loops it, which is far cheaper than
    drawing the text on every frame."""
    if slide.get("template") == "bar":
        background = "color=c=0xf2f2f2"
        title = f"drawbox=x=0:y=0:w={W}:h=140:color=0x1f4e79:t=fill,drawtext=fontfile={BOLD}:fontsize=60:fontcolor=white:x=80:y=42"
    else:
        background = "color=c=white"
        title = f"drawbox=x=80:y=140:w={W - 160}:h=4:color=0x2e75b6:t=fill,drawtext=fontfile={BOLD}:fontsize=60:fontcolor=0x1a1a2e:x=80:y=52"
    title += f":textfile={_text(tmp, f'{i}_t.txt', slide['title'])}"
    filters = [title]
    for j, line in enumerate(slide["bullets"]):
        y = 210 + 72 * j
        filters.append(f"drawtext=fontfile={FONT}:fontsize=32:fontcolor=0x2e75b6:x=90:y={y}:text=•")
        filters.append(f"drawtext=fontfile={FONT}:fontsize=32:fontcolor=0x222222:x=130:y={y}"
                       f":textfile={_text(tmp, f'{i}_{j}.txt', line)}")
    png = tmp / f"slide{i}.png"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"{background}:s={W}x{H}",
                    "-vf", ",".join(filters), "-frames:v", "1", str(png)], check=True)
    return png


def _join(pngs, spans):
    """Input arguments and filters that lay the stills out on the timeline: a hard cut
    is one still after another; a fade is a 1 s piece of its own, drawn with `fade`
    rather than `xfade`, whose output in ffmpeg 5.1 skips a frame and so shifts every
    later slide by 0.04 s. Returns (inputs as argument lists, filter parts, output label)."""
    inputs, parts, pieces = [], [], []

    def still(i, seconds, then=""):
        """One input looping slide i for `seconds`, as a filter chain start."""
        inputs.append(["-loop", "1", "-framerate", str(FPS), "-t", f"{seconds:.2f}", "-i", str(pngs[i])])
        return f"[{len(inputs) - 1}:v]fps={FPS},format=yuv420p,setsar=1{then}"

    for i, (slide, (start, fade_end, end)) in enumerate(zip(SLIDES, spans)):
        n = len(pieces)
        if slide["kind"] == "fade":
            # The new slide's opacity rises from 0 at `at` to 1 at `fade_end`.
            parts.append(still(i - 1, FADE) + f"[old{n}]")
            parts.append(still(i, FADE, f",format=yuva420p,fade=t=in:d={FADE}:alpha=1") + f"[new{n}]")
            parts.append(f"[old{n}][new{n}]overlay=format=yuv420[p{n}]")
            pieces.append(f"[p{n}]")
        elif slide["kind"] == "fadeblack":
            # 13 frames out, the last one black, then 12 frames in, the first one black.
            half = round(FADE * FPS / 2 - 0.5) / FPS
            parts.append(still(i - 1, FADE - half, f",fade=t=out:d={half}") + f"[p{n}]")
            parts.append(still(i, half, f",fade=t=in:d={half}") + f"[p{n + 1}]")
            pieces += [f"[p{n}]", f"[p{n + 1}]"]
        n = len(pieces)
        parts.append(still(i, end - (fade_end or start)) + f"[p{n}]")
        pieces.append(f"[p{n}]")
    parts.append("".join(pieces) + f"concat=n={len(pieces)}:v=1:a=0,settb=1/{FPS}[slides]")
    return inputs, parts, "[slides]"


def _graph(pngs, spans, total):
    """The whole filter graph: the joined slides, then the moving things over them.
    Extras are enabled only while their slide is fully on screen, so they never move a
    change away from the slide's own arrival. Returns (input args, graph, audio input)."""
    inputs, parts, slides = _join(pngs, spans)
    n = len(inputs)
    sources = [
        f"testsrc2=s=320x240:r={FPS}",  # the talking head
        f"life=s=200x112:r={FPS}:ratio=0.3:seed=7:mold=8:life_color=0xe0c060:death_color=0x1a3050",  # the clip
        f"color=c=0x111111:s=12x18:r={FPS}",  # the cursor
        "sine=f=220:r=48000,volume=0.05",  # quiet audio
    ]
    inputs += [["-f", "lavfi", "-t", str(total), "-i", src] for src in sources]
    iw, ih, ix, iy = INSET
    cw, ch, cx, cy = CLIP
    parts.append(f"[{n}:v]scale={iw}:{ih},format=yuv420p[inset]")
    parts.append(f"[{n + 1}:v]scale={cw}:{ch}:flags=neighbor,format=yuv420p[clip]")
    parts.append(f"[{n + 2}:v]format=yuv420p[cursor]")
    # Half a frame of slack keeps the enable windows off the exact frame boundaries.
    on = lambda a, b: f"gte(t,{a - 0.02:.2f})*lt(t,{b - 0.02:.2f})"
    with_extra = lambda kind: [(f or s, e) for sl, (s, f, e) in zip(SLIDES, spans) if sl.get("extra") == kind]
    clip_on = "+".join(on(a, b) for a, b in with_extra("video")) or "0"
    cursor_on = "+".join(on(a + 0.5, b - 0.5) for a, b in with_extra("cursor")) or "0"
    parts.append(f"{slides}[clip]overlay=x={cx}:y={cy}:enable='{clip_on}'[v1]")
    parts.append(f"[v1][cursor]overlay=x='640+420*sin(0.7*t)':y='380+150*sin(1.1*t+1)':enable='{cursor_on}'[v2]")
    parts.append(f"[v2][inset]overlay=x={ix}:y={iy}:shortest=1,trim=duration={total}[v]")
    return [arg for args in inputs for arg in args], ";".join(parts), f"{n + 3}:a"


def build(path: Path):
    """Renders the video into `path`; takes about 25 s on two cores."""
    total, spans = timeline()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pngs = [_slide_png(tmp, i, slide) for i, slide in enumerate(SLIDES)]
        inputs, graph, audio = _graph(pngs, spans, total)
        part = path.with_suffix(".part.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[v]", "-map", audio,
                        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "50", "-r", str(FPS),
                        "-c:a", "aac", "-b:a", "64k", "-t", str(total), "-movflags", "+faststart", str(part)],
                       check=True)
        part.rename(path)


def make(out_dir: Path) -> tuple[Path, dict]:
    """Writes slides.mp4 (cached: rebuilt only if missing) and returns it with its truth:
    {"duration": s, "changes": [{"at": s, "title", "kind": "cut"|"fade"|"fadeblack",
    "fade_end": s or None}]}, changes[0] being the first slide at 0.0. For a fade, "at" is
    when the picture starts leaving the old slide."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / "slides.mp4"
    if not video.exists():
        build(video)
    return video, truth()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: slide_lecture.py OUT_DIR")
    video, facts = make(Path(sys.argv[1]))
    (video.parent / "truth.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(json.dumps(facts, indent=2))
