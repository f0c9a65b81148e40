#!/usr/bin/env bash
# A PulseAudio virtual microphone for headless machines and CI.
#
#   bash stream/virtual-mic.sh start    # start (or reuse) PulseAudio, create the mic, make it the default input
#   bash stream/virtual-mic.sh status   # print the settings; exit 1 if the mic is not there
#   bash stream/virtual-mic.sh stop     # remove the mic (and stop PulseAudio if this script started it)
#
# Whatever is written into the FIFO (raw s16le mono PCM at $NEUROEAR_MIC_RATE) is what
# PortAudio/PyAudio record from the default input, e.g. for a 48 kHz mic:
#   sox clip.ogg -t raw -r 48000 -e signed -b 16 -c 1 - > "$NEUROEAR_MIC_FIFO"
# (`sox` writes as fast as the pipe takes it; the FIFO holds ~0.7 s, so pace long clips
#  yourself: see stream/README.md).
#
# Caveats, checked on Debian 12 / PulseAudio 16:
#  - the pipe source has no clock: with no writer, a recording client's blocking read spins
#    and never returns. Keep a writer feeding the FIFO while anything records from it.
#  - PulseAudio stops draining the FIFO while nobody records, so a blocking writer stalls.
#
# Settings (environment; printed by start/status as `export` lines you can eval):
#   NEUROEAR_MIC_FIFO    FIFO path              (default /tmp/neuroear-mic.fifo)
#   NEUROEAR_MIC_RATE    sample rate in Hz      (default 48000)
#   NEUROEAR_MIC_SOURCE  PulseAudio source name (default neuroear_mic)
# Idempotent: `start` twice keeps the running mic, `stop` twice is fine. Works as root
# (runs a per-user daemon with --system=no; the "not intended to be run as root" warning
# is expected there).
set -euo pipefail

FIFO="${NEUROEAR_MIC_FIFO:-/tmp/neuroear-mic.fifo}"
RATE="${NEUROEAR_MIC_RATE:-48000}"
SOURCE="${NEUROEAR_MIC_SOURCE:-neuroear_mic}"
SINK="${SOURCE}_sink"
STATE_DIR="${XDG_RUNTIME_DIR:-/tmp}/neuroear-virtual-mic-$(id -u)"
STARTED_MARK="$STATE_DIR/started-pulseaudio"

die() { echo "virtual-mic: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (apt-get install pulseaudio pulseaudio-utils)"; }

pulse_up() { pactl info >/dev/null 2>&1; }

module_of() {  # module index owning source/sink $2 of kind $1 (sources|sinks), empty if none
    pactl list short modules 2>/dev/null | awk -v n="$2" -v k="$1" '
        k == "sources" && $2 == "module-pipe-source" && $0 ~ ("source_name=" n "( |$)") { print $1; exit }
        k == "sinks"   && $2 == "module-null-sink"   && $0 ~ ("sink_name=" n "( |$)")   { print $1; exit }'
}

source_rate() {  # the running source's rate in Hz ("s16le 1ch 48000Hz" → 48000)
    pactl list short sources 2>/dev/null | awk -v n="$SOURCE" '$2 == n { for (i = 1; i <= NF; i++) if ($i ~ /Hz$/) { sub(/Hz$/, "", $i); print $i } }'
}

source_fifo() {
    pactl list short modules 2>/dev/null | awk -v n="$SOURCE" '
        $2 == "module-pipe-source" && $0 ~ ("source_name=" n "( |$)") { for (i = 1; i <= NF; i++) if ($i ~ /^file=/) { sub(/^file=/, "", $i); print $i } }'
}

print_settings() {
    echo "export NEUROEAR_MIC_FIFO=$1"
    echo "export NEUROEAR_MIC_RATE=$2"
    echo "export NEUROEAR_MIC_SOURCE=$SOURCE"
    echo "# write raw s16le mono PCM at $2 Hz into $1; default input is now $SOURCE" >&2
}

start() {
    need pulseaudio
    need pactl
    [[ "$RATE" =~ ^[0-9]+$ ]] || die "NEUROEAR_MIC_RATE must be an integer in Hz, got '$RATE'"
    mkdir -p "$STATE_DIR"
    if ! pulse_up; then
        # -n: no default.pa (no hardware probing); only the native protocol, so clients find the
        # daemon at its usual per-user socket. --exit-idle-time=-1: stay up with no clients.
        pulseaudio --system=no -n --daemonize=yes --exit-idle-time=-1 --log-target=stderr \
            -L "module-native-protocol-unix auth-anonymous=1" 2>"$STATE_DIR/pulseaudio.log" \
            || { cat "$STATE_DIR/pulseaudio.log" >&2; die "could not start pulseaudio"; }
        for _ in $(seq 50); do pulse_up && break; sleep 0.1; done
        pulse_up || die "pulseaudio started but pactl cannot reach it"
        touch "$STARTED_MARK"
    fi
    if [[ -n "$(module_of sources "$SOURCE")" ]]; then
        local rate fifo
        rate="$(source_rate)"; fifo="$(source_fifo)"
        if [[ "$rate" != "$RATE" || "$fifo" != "$FIFO" ]]; then
            echo "virtual-mic: keeping the running $SOURCE ($fifo at $rate Hz); 'stop' first to change it" >&2
        fi
        FIFO="$fifo"; RATE="$rate"
    else
        # module-pipe-source creates the FIFO itself and refuses one that exists (a leftover)
        if [[ -e "$FIFO" && ! -p "$FIFO" ]]; then die "$FIFO exists and is not a FIFO"; fi
        rm -f "$FIFO"
        mkdir -p "$(dirname "$FIFO")"
        pactl load-module module-pipe-source source_name="$SOURCE" file="$FIFO" format=s16le \
            rate="$RATE" channels=1 >/dev/null || die "could not load module-pipe-source on $FIFO"
    fi
    if [[ -z "$(module_of sinks "$SINK")" ]]; then
        # a sink to play into, so that clients asking for a default output find one
        pactl load-module module-null-sink sink_name="$SINK" rate="$RATE" >/dev/null || die "could not load module-null-sink"
    fi
    pactl set-default-source "$SOURCE"
    pactl set-default-sink "$SINK"
    print_settings "$FIFO" "$RATE"
}

stop() {
    if pulse_up; then
        local m fifo
        fifo="$(source_fifo)"; [[ -z "$fifo" ]] || FIFO="$fifo"
        m="$(module_of sources "$SOURCE")"; [[ -z "$m" ]] || pactl unload-module "$m" || true
        m="$(module_of sinks "$SINK")"; [[ -z "$m" ]] || pactl unload-module "$m" || true
        if [[ -e "$STARTED_MARK" ]]; then
            pulseaudio --kill 2>/dev/null || true
            for _ in $(seq 30); do pulse_up || break; sleep 0.1; done
        fi
    fi
    rm -f "$STARTED_MARK"
    [[ -p "$FIFO" ]] && rm -f "$FIFO"
    echo "virtual-mic: stopped" >&2
}

status() {
    if pulse_up && [[ -n "$(module_of sources "$SOURCE")" ]]; then
        print_settings "$(source_fifo)" "$(source_rate)"
    else
        echo "virtual-mic: not running" >&2
        exit 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
