"""Microphone and speaker, for real: PulseAudio null sinks stand in for the sound card.

`.ci/pulse-setup.sh` (run once per session) makes `uservoice.monitor` the default source
and `speaker` the default sink, so `paplay --device=uservoice` speaks into our microphone
and `parecord --device=speaker.monitor` hears our speaker. Streams over the PulseAudio ALSA
plugin take 1-2 s before their callbacks flow on this kind of machine, hence the generous
waits (only lower bounds on durations are asserted: a loaded CI box is only ever slower).

The file-mode tests (MicFile, SpeakerFile) need no sound server.
"""

from __future__ import annotations

import builtins
import shutil
import subprocess
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import read_wav, write_wav
from pipeline.audio_io import (
    CaptureClock,
    DeviceError,
    MicFile,
    MicStream,
    PlayClock,
    SpeakerFile,
    SpeakerStream,
    adc_wall_time,
    find_device,
    list_devices,
)
from pipeline.messages import CUT, FINISHED, STARTED, TURN_END
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
STARTUP_S = 10.0  # first audio through the PulseAudio ALSA plugin can take a couple of seconds


# --------------------------------------------------------------------------- helpers


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tone_wav(path: Path, freq: float, seconds: float, rate: int = 44100) -> Path:
    """A 16-bit mono tone made with numpy + wave (no fixtures on disk)."""
    pcm = np.rint(sine(freq, seconds, rate) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[spectrum.argmax()])


def loud(x: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    return np.flatnonzero(np.abs(x) > threshold)


def quiet_tail(raw: Path, quiet_s: float = 0.3, rate: int = 16000) -> bool:
    """A parecord raw file (s16le mono) holds sound and ends with `quiet_s` of silence."""
    heard = np.frombuffer(raw.read_bytes()[: raw.stat().st_size // 2 * 2], dtype="<i2")
    n = int(quiet_s * rate)
    tail = heard[-n:].astype(np.float32) / 32768.0
    return bool(loud(heard.astype(np.float32) / 32768.0).size) and heard.size > n and not loud(tail).size


@pytest.fixture(scope="session")
def pulse() -> None:
    """A running PulseAudio with the two null sinks (skipped only without pulseaudio)."""
    if shutil.which("pulseaudio") is None:
        pytest.skip(
            "pulseaudio is not installed (CI installs it: apt-get install pulseaudio "
            "pulseaudio-utils libasound2-plugins libportaudio2)"
        )
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "pulse-setup.sh")], capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"pulse-setup.sh failed: {done.stderr.strip()}"


# --------------------------------------------------------------------------- devices


@pytest.mark.sound
@pytest.mark.parametrize("device_rate", [None, 48000], ids=["16k", "48k-resampled"])
def test_mic_stream_records_a_tone(pulse, tmp_path, device_rate):
    wav = tone_wav(tmp_path / "tone.wav", 440.0, 1.0)
    with MicStream(device_rate=device_rate) as mic:
        assert mic.resampling == (device_rate is not None)
        assert mic.read(timeout=STARTUP_S) is not None, "no audio from the microphone"
        t_play = time.time()
        player = subprocess.Popen(["paplay", "--device=uservoice", str(wav)])
        blocks = []
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            block = mic.read(timeout=0.5)
            if block is not None:
                blocks.append(block)
            heard = np.concatenate([b.samples for b in blocks]) if blocks else np.zeros(1)
            idx = loud(heard)
            # the whole tone plus a bit of silence after it
            if player.poll() is not None and idx.size and heard.size - idx[-1] > 8000:
                break
        player.wait(timeout=10)
        assert mic.overflows == 0
        stats = mic.stats
    assert {b.samples.size for b in blocks} == {320}
    assert all(b.samples.dtype == np.float32 for b in blocks)
    audio = np.concatenate([b.samples for b in blocks])
    idx = loud(audio)
    assert idx.size, "the tone never reached the microphone"
    tone = audio[idx[0] : idx[-1]]
    assert tone.size / 16000 >= 0.9
    assert dominant_hz(tone, 16000) == pytest.approx(440.0, abs=5.0)
    # capture times: evenly spaced, and the tone starts after paplay was started
    times = np.array([b.capture_time for b in blocks])
    assert np.all(np.diff(times) > 0)
    assert np.median(np.diff(times)) == pytest.approx(0.02, abs=0.002)
    first = idx[0] // 320
    onset = blocks[first].capture_time + (idx[0] % 320) / 16000
    assert onset > t_play - 0.1
    assert onset < t_play + 3.0
    assert stats.blocks > 0 and stats.callback_max_s > 0


@pytest.mark.sound
@pytest.mark.parametrize("device_rate", [None, 48000], ids=["22k", "48k-resampled"])
def test_speaker_stream_plays_a_tone(pulse, tmp_path, device_rate):
    raw = tmp_path / "heard.raw"
    rate = 22050
    part = sine(660.0, 0.5, rate)
    with open(raw, "wb") as sink:
        recorder = subprocess.Popen(
            ["parecord", "--device=speaker.monitor", "--raw", "--format=s16le",
             "--rate=16000", "--channels=1", "--latency-msec=20"],
            stdout=sink,
        )
        try:
            with SpeakerStream(device_rate=device_rate) as speaker:
                assert speaker.device_rate == (device_rate or rate)
                assert speaker.ready
                t_add = time.time()
                assert speaker.add(1, 0, part, rate, "First.")
                assert speaker.add(1, 1, part, rate, "Second.", last=True)
                assert speaker.is_playing
                events = []

                def turn_ended() -> bool:
                    events.extend(speaker.drain_events())
                    return TURN_END in [e.kind for e in events]

                wait_until(turn_ended, STARTUP_S, "the turn_end event")
                wait_until(lambda: not speaker.is_playing, 2.0, "the speaker to go idle")
                # the tail has reached parecord once it records silence after it
                wait_until(lambda: quiet_tail(raw), 5.0, "silence on speaker.monitor after the tone")
                assert speaker.underruns == 0
                assert speaker.stats.blocks > 0
        finally:
            recorder.terminate()
            recorder.wait(timeout=10)
    assert [(e.kind, e.segment_index) for e in events] == [
        (STARTED, 0), (FINISHED, 0), (STARTED, 1), (FINISHED, 1), (TURN_END, 1),
    ]
    assert events[0].text == "First."
    assert events[0].t >= t_add - 0.01
    # Times follow the samples (exact to ~1 ms normally). A scheduling stall on a busy box
    # makes ALSA underflow and restart, which skews one estimate by up to ~0.1 s; a bug in
    # the clock mapping (e.g. trusting DAC times while the stream is still priming) is off
    # by seconds.
    assert events[1].t - events[0].t == pytest.approx(0.5, abs=0.1)
    assert events[3].t - events[0].t == pytest.approx(1.0, abs=0.1)
    heard = np.frombuffer(raw.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
    idx = loud(heard)
    assert idx.size, "nothing was heard on speaker.monitor"
    tone = heard[idx[0] : idx[-1]]
    # 1 s was played; on a busy box parecord itself may drop a little, so ask for most of it
    assert tone.size / 16000 >= 0.6
    assert dominant_hz(tone, 16000) == pytest.approx(660.0, abs=5.0)


@pytest.mark.sound
def test_speaker_clear_cuts_the_playing_segment(pulse):
    rate = 22050
    with SpeakerStream() as speaker:
        speaker.add(4, 0, sine(500.0, 3.0, rate), rate, "A long answer.")
        speaker.add(4, 1, sine(500.0, 1.0, rate), rate, "More.", last=True)
        events = []

        def started() -> bool:
            events.extend(speaker.drain_events())
            return bool(events)

        wait_until(started, STARTUP_S, "the started event")
        assert [e.kind for e in events] == [STARTED]  # control: the callbacks do report
        played_from = speaker.stats.blocks
        wait_until(lambda: speaker.stats.blocks >= played_from + 5, 5.0, "five more audio callbacks")
        cut = speaker.clear()
        assert [(c.turn_id, c.segment_index, c.started) for c in cut] == [
            (4, 0, True), (4, 1, False),
        ]
        assert 0 < cut[0].played_samples < cut[0].total_samples == 3 * rate
        # callbacks after the clear would have reported anything still due for what was cut
        cleared_at = speaker.stats.blocks
        wait_until(lambda: speaker.stats.blocks >= cleared_at + 5, 5.0, "five audio callbacks after the clear")
        # nothing more for what was cut: only the cut itself
        assert [e.kind for e in speaker.drain_events()] == [CUT]
        assert not speaker.is_playing


@pytest.mark.sound
def test_find_device_default_index_and_names(pulse):
    inputs = list_devices("input")
    assert any("'default'" in d for d in inputs)
    default = find_device("", "input")
    assert isinstance(default, int)
    assert find_device(str(default), "input") == default
    assert find_device("DEFAULT", "output") == find_device("default", "output")


@pytest.mark.sound
def test_find_device_bogus_name_names_the_setting(pulse):
    with pytest.raises(DeviceError) as err:
        find_device("no-such-microphone", "input")
    message = str(err.value)
    assert "MIC_DEVICE='no-such-microphone'" in message
    assert "MIC_FILE" in message and "'default'" in message  # what to set, and to what
    with pytest.raises(DeviceError, match="SPEAKER_DEVICE='999'.*SPEAKER_FILE"):
        find_device("999", "output")


@pytest.mark.sound
def test_streams_on_a_bogus_device_fail_clearly(pulse):
    with pytest.raises(DeviceError, match="MIC_DEVICE='nope'.*MIC_FILE"):
        MicStream(device="nope").start()
    with pytest.raises(DeviceError, match="SPEAKER_DEVICE='nope'.*SPEAKER_FILE"):
        SpeakerStream(device="nope").start()


@pytest.mark.sound
def test_mic_stream_that_dies_raises_and_reopens(pulse):
    with MicStream() as mic:
        assert mic.read(timeout=STARTUP_S) is not None
        mic._stream.abort()  # what PortAudio does when the device goes away
        with pytest.raises(DeviceError, match="stopped.*MIC_DEVICE"):
            while True:  # blocks already queued come out first
                mic.read(timeout=1.0)
        mic.reopen()
        assert mic.read(timeout=STARTUP_S) is not None


def test_missing_portaudio_is_a_device_error(monkeypatch):
    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(DeviceError, match="libportaudio2.*MIC_FILE"):
        find_device("", "input")
    with pytest.raises(DeviceError, match="libportaudio2.*SPEAKER_FILE"):
        SpeakerStream().start()


# --------------------------------------------------------------------------- file mode


def test_mic_file_fast_mode_blocks_tail_and_timestamps(tmp_path):
    audio = sine(300.0, 1.0, 16000, amp=0.3)
    path = tmp_path / "q.wav"
    write_wav(path, audio, 16000)
    mic = MicFile(path, realtime=False, tail_s=0.5)
    mic.start(start_time=1000.0)
    blocks = []
    while not mic.finished:
        block = mic.read(timeout=0)  # never has to wait: not paced
        assert block is not None
        blocks.append(block)
    assert mic.read(timeout=0) is None and mic.read() is None  # forever
    assert len(blocks) == 75  # 1.5 s / 20 ms
    assert {b.samples.size for b in blocks} == {320}
    got = np.concatenate([b.samples for b in blocks])
    assert np.allclose(got[:16000], audio, atol=1 / 32768)
    assert np.all(got[16000:] == 0.0)  # the tail is silence
    assert [b.capture_time for b in blocks] == pytest.approx([1000.0 + k * 0.02 for k in range(75)])


def test_mic_file_realtime_is_paced(tmp_path):
    path = tmp_path / "one-second.wav"
    write_wav(path, sine(300.0, 1.0, 16000, amp=0.3), 16000)
    mic = MicFile(path, realtime=True, tail_s=0.0)
    started = time.monotonic()
    mic.start()
    assert mic.read(timeout=0) is None  # the first block is not recorded yet
    blocks = []
    while not mic.finished:
        block = mic.read(timeout=0.5)
        if block is not None:
            blocks.append(block)
    elapsed = time.monotonic() - started
    assert len(blocks) == 50
    assert elapsed >= 0.9
    times = np.array([b.capture_time for b in blocks])
    assert np.allclose(np.diff(times), 0.02, atol=1e-6)  # float64 at 1.8e9 s: ~2e-7
    assert times[0] == pytest.approx(mic.start_time)


def test_mic_file_close_wakes_a_waiting_reader(tmp_path):
    path = tmp_path / "long.wav"
    write_wav(path, np.zeros(16000 * 30, dtype=np.float32), 16000)
    mic = MicFile(path, realtime=True, block_ms=20)
    mic.start(start_time=time.time() + 60.0)  # the first block is a minute away
    got = []
    reader = threading.Thread(target=lambda: got.append(mic.read()))
    reader.start()
    # the reader is waiting for its block (Event.wait on the close flag) before we close
    wait_until(lambda: mic._closed._cond._waiters, 10, "the reader to wait for its block")
    mic.close()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert got == [None] and mic.finished


def test_mic_file_resamples_to_16k(tmp_path):
    path = tone_wav(tmp_path / "cd.wav", 440.0, 1.0, rate=44100)
    mic = MicFile(path, realtime=False, tail_s=0.0)
    blocks = []
    while (block := mic.read()) is not None:
        blocks.append(block.samples)
    audio = np.concatenate(blocks)
    assert audio.size == pytest.approx(16000, abs=320)
    assert dominant_hz(audio, 16000) == pytest.approx(440.0, abs=3.0)


def test_mic_file_bad_file_names_mic_file(tmp_path):
    path = tmp_path / "not.wav"
    path.write_text("hello")
    with pytest.raises(DeviceError, match="MIC_FILE="):
        MicFile(path)


def test_speaker_file_writes_and_reports_at_once(tmp_path):
    path = tmp_path / "out" / "answer.wav"
    path.parent.mkdir()
    first = sine(500.0, 0.5, 22050)
    other_rate = sine(500.0, 0.25, 16000)  # resampled to the file's 22050 Hz
    t_before = time.time()
    with SpeakerFile(path) as speaker:
        assert speaker.add(1, 0, first, 22050, "One.")
        assert speaker.add(1, 1, other_rate, 16000, "Two.", last=True)
        events = speaker.drain_events()
        assert speaker.is_playing  # the virtual clock is still inside the audio
        assert speaker.clear() == []  # everything already went out
    assert [(e.kind, e.segment_index) for e in events] == [
        (STARTED, 0), (FINISHED, 0), (STARTED, 1), (FINISHED, 1), (TURN_END, 1),
    ]
    assert events[0].t >= t_before
    assert events[1].t - events[0].t == pytest.approx(0.5, abs=1e-3)
    assert events[3].t - events[2].t == pytest.approx(0.25, abs=1e-3)
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (22050, 2, 1)
    audio, rate = read_wav(path)
    assert rate == 22050
    assert audio.size == pytest.approx(round(0.75 * 22050), abs=2)
    assert dominant_hz(audio, rate) == pytest.approx(500.0, abs=3.0)


def test_speaker_file_without_audio_is_a_valid_empty_wav(tmp_path):
    path = tmp_path / "silent.wav"
    SpeakerFile(path).close()
    audio, rate = read_wav(path)
    assert audio.size == 0 and rate == 22050


def test_speaker_file_in_a_missing_folder_is_refused_at_start(tmp_path):
    with pytest.raises(DeviceError, match="SPEAKER_FILE"):
        SpeakerFile(tmp_path / "no-such-folder" / "answer.wav").start()
    assert SpeakerFile(tmp_path / "answer.wav").start() is not None


def test_speaker_file_chunked_segment(tmp_path):
    path = tmp_path / "chunks.wav"
    with SpeakerFile(path) as speaker:
        speaker.add(2, 0, sine(400.0, 0.2, 22050), 22050, "A. B.", end_of_segment=False)
        assert [e.kind for e in speaker.drain_events()] == [STARTED]
        cut = speaker.clear(turn_id_below=3)  # barge-in while the segment is mid-way
        assert [(c.turn_id, c.started, c.played_samples) for c in cut] == [(2, True, 4410)]
        assert not speaker.add(2, 0, sine(400.0, 0.2, 22050), 22050, "A. B.")  # stale
        events = speaker.drain_events()
        assert [(e.kind, e.turn_id) for e in events] == [(CUT, 3)]
        assert events[0].cut == tuple(cut)


# --------------------------------------------------------------------------- clocks


def test_adc_wall_time_mapping():
    assert adc_wall_time(1000.0, 50.0, 49.97, 0.02, max_age_s=0.1) == pytest.approx(999.97)
    # PulseAudio's first blocks claim to be 0.7 s old: not believed
    assert adc_wall_time(1000.0, 50.0, 49.3, 0.02, max_age_s=0.1) == pytest.approx(999.98)
    assert adc_wall_time(1000.0, 0.0, 0.0, 0.02) == pytest.approx(999.98)  # no clock at all


def test_capture_clock_smooths_jitter_and_stays_monotonic():
    rng = np.random.default_rng(0)
    clock = CaptureClock(16000)
    true = 500.0 + 0.02 * np.arange(500)
    stamps = np.array([clock.stamp(t + rng.uniform(-0.03, 0.03), 320) for t in true])
    assert np.all(np.diff(stamps) > 0)
    assert np.abs(stamps[100:] - true[100:]).max() < 0.015  # vs +-30 ms raw


def test_capture_clock_gap_and_burst():
    clock = CaptureClock(16000)
    stamps = [clock.stamp(100.0 + 0.02 * k, 320) for k in range(10)]
    stamps.append(clock.stamp(105.0, 320))  # blocks lost: time jumped forward
    assert stamps[-1] == pytest.approx(105.0)
    # a burst: ten blocks estimated at the same instant (delivered late, all at once)
    burst = [clock.stamp(105.02, 320) for _ in range(10)]
    steady = [clock.stamp(105.22 + 0.02 * k, 320) for k in range(200)]
    stamps += burst + steady
    assert np.all(np.diff(stamps) > 0.0099)  # never backwards, at least half a block
    assert steady[-1] == pytest.approx(105.22 + 0.02 * 199, abs=0.01)


def test_play_clock_keeps_a_burst_in_sequence():
    clock = PlayClock(1000)
    assert clock.stamp(10.0, 20) == 10.0
    # after an underflow ALSA asks for five blocks at once, each claiming to play "now"
    burst = [clock.stamp(10.05, 20) for _ in range(5)]
    assert burst[0] == pytest.approx(10.05)
    assert np.diff(burst) == pytest.approx([0.0195] * 4)  # one block each, less the slack
    assert clock.stamp(11.0, 20) == 11.0  # a real gap is followed at once


def _callback_stream(rate: int = 22050) -> SpeakerStream:
    """A SpeakerStream whose callback is driven by hand (no device): as after start()."""
    speaker = SpeakerStream()
    speaker.device_rate = rate
    speaker.latency = 0.04
    assert speaker._use_rate(rate) is speaker.buffer
    speaker._clock = PlayClock.for_device(rate, speaker.latency, 441)
    return speaker


def test_blocks_asked_for_right_after_underflows_take_nothing_from_the_answer():
    from types import SimpleNamespace

    rate, block = 22050, 441
    speaker = _callback_stream(rate)
    answer = np.full(rate, 0.5, dtype=np.float32)  # 1 s
    speaker.buffer.add(7, 0, answer, "An answer.", last=True)
    out = np.zeros((block, 1), dtype=np.float32)

    def callback(underflow: bool, now: float) -> np.ndarray:
        status = SimpleNamespace(output_underflow=underflow)
        speaker._callback(out, block, SimpleNamespace(currentTime=now, outputBufferDacTime=now + 0.04), status)
        return out[:, 0].copy()

    heard = [callback(False, 1.0)]
    heard += [callback(True, 1.0 + 0.001 * k) for k in range(150)]  # the storm: all discarded
    assert all(not b.any() for b in heard[1:])
    heard += [callback(False, 2.0 + 0.02 * k) for k in range(60)]
    played = np.concatenate(heard)
    assert np.count_nonzero(played) == rate  # none of the answer went into discarded blocks
    assert speaker.underflows == 150


def test_a_device_that_flags_every_block_at_the_pace_it_plays_still_plays(monkeypatch):
    from types import SimpleNamespace

    from pipeline.audio_io import sinks

    rate, block = 22050, 441
    clock = [50.0]
    monkeypatch.setattr(sinks.time, "monotonic", lambda: clock[0])
    speaker = _callback_stream(rate)
    speaker.buffer.add(7, 0, np.full(rate, 0.5, dtype=np.float32), "An answer.", last=True)
    out = np.zeros((block, 1), dtype=np.float32)
    status = SimpleNamespace(output_underflow=True)
    played = []
    for k in range(120):  # 2.4 s of blocks, one every 20 ms, every one flagged
        clock[0] = 50.0 + 0.02 * k
        speaker._callback(out, block, SimpleNamespace(currentTime=clock[0], outputBufferDacTime=clock[0]), status)
        played.append(np.count_nonzero(out))
    grace = round(SpeakerStream.UNDERFLOW_GRACE_S / 0.02)
    assert sum(played[:grace]) == 0 and sum(played) == rate  # silent for the grace, then all of it


def test_play_clock_does_not_run_ahead_through_a_storm_of_underflows():
    # Seen in CI through PulseAudio: ~150 underflows within a second, each callback
    # claiming to play "now". The device cannot hold 3 s of blocks: ALSA's recovery
    # dropped them, and what comes after plays on the DAC estimate, not 2.6 s later.
    rate, block = 22050, 441
    clock = PlayClock.for_device(rate, 0.04, block)
    assert clock.max_ahead_s == pytest.approx(0.12)
    t = 100.0
    for k in range(150):
        stamp = clock.stamp(t + 0.004 * k, block)  # 150 blocks in 0.6 s
        assert stamp - (t + 0.004 * k) <= clock.max_ahead_s
    steady = [clock.stamp(101.0 + 0.02 * k, block) for k in range(50)]
    assert steady[-1] == pytest.approx(101.0 + 0.02 * 49, abs=0.05)
    # an ordinary refill (what the buffer holds) is still kept in sequence
    refill = [clock.stamp(102.0, block) for _ in range(4)]
    assert np.diff(refill) == pytest.approx([0.02 - clock.slack_s] * 3)
