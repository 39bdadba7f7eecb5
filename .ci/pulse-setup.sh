#!/usr/bin/env bash
# A sound card without hardware: PulseAudio with two null sinks, so the real microphone and
# speaker code paths (PortAudio -> ALSA "default" -> PulseAudio) run on a headless machine.
#
#   uservoice          the user's voice goes in here (paplay --device=uservoice question.wav)
#   uservoice.monitor  default source = the assistant's microphone
#   speaker            default sink = the assistant's speaker
#   speaker.monitor    what the assistant said (parecord --device=speaker.monitor ...)
#
# Idempotent: safe to run again; it only starts/loads what is missing.
# Exits non-zero with one clear line when PulseAudio cannot be set up.
set -euo pipefail

fail() {
    echo "pulse-setup: $*" >&2
    exit 1
}

command -v pulseaudio >/dev/null 2>&1 \
    || fail "pulseaudio is not installed" \
        "(apt-get install pulseaudio pulseaudio-utils libasound2-plugins libportaudio2)"
command -v pactl >/dev/null 2>&1 \
    || fail "pactl is not installed (apt-get install pulseaudio-utils)"

# Poll `pactl info` for up to ~5 s instead of sleeping a fixed time: the daemon is usually
# ready in well under a second, but a busy CI machine can take longer.
wait_for_pulse() {
    local tries=50
    while ((tries-- > 0)); do
        if pactl info >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

if ! pactl info >/dev/null 2>&1; then
    # As root PulseAudio warns ("This program is not intended to be run as root") and runs.
    # Its stderr is kept and shown only when it fails, so the usual root warning stays quiet.
    if ! log=$(pulseaudio -D --exit-idle-time=-1 --system=false 2>&1); then
        fail "could not start the PulseAudio daemon: ${log}"
    fi
    wait_for_pulse || fail "PulseAudio started but does not answer 'pactl info' after 5 s"
fi

ensure_null_sink() {
    local name=$1 description=$2
    if pactl list short sinks | awk '{print $2}' | grep -qx "$name"; then
        return 0
    fi
    pactl load-module module-null-sink sink_name="$name" \
        sink_properties=device.description="$description" >/dev/null \
        || fail "could not load null sink '$name'"
}

ensure_null_sink uservoice "User-voice"
ensure_null_sink speaker "Assistant-speaker"

pactl set-default-source uservoice.monitor || fail "could not set default source uservoice.monitor"
pactl set-default-sink speaker || fail "could not set default sink speaker"

echo "pulse-setup: ready (source uservoice.monitor, sink speaker)"
