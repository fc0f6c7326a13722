#!/usr/bin/env python3
"""PSS (MiB) summed over every process running the given zonelab binary, and their count."""
import os, sys
exe = os.path.realpath(sys.argv[1])
total = n = 0
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        if os.readlink(f'/proc/{pid}/exe') != exe:
            continue
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                if line.startswith('Pss:'):
                    total += int(line.split()[1]); n += 1
                    break
    except OSError:
        pass
print(f"PSS of {n} lab processes: {total / 1024:.0f} MiB")
