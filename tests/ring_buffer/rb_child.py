"""Child process for the crash and multi-process tests (not a test module).

``python rb_child.py PATH DURABILITY TASKS COUNT TAG`` appends from TASKS concurrent tasks (every
fifth call an ``append_many`` of three) and prints ``id task seq`` for each entry once its append
has returned, flushing each line. COUNT entries per task, then a clean close; 0 means forever.
"""

from __future__ import annotations

import asyncio
import sys


def payload(tag: str, task: int, seq: int) -> bytes:
    """The deterministic payload the parent expects back for (tag, task, seq)."""
    head = f"{tag}:{task}:{seq}:".encode()
    return head + bytes([65 + seq % 26]) * (50 + (task * 31 + seq * 17) % 700)


async def main(path: str, durability: str, tasks: int, count: int, tag: str) -> None:
    from eventkit_ring_buffer import RingBuffer

    out = sys.stdout.buffer
    async with RingBuffer(path, durability="full" if durability == "full" else "normal") as rb:

        async def worker(task: int) -> None:
            seq = 0
            while count == 0 or seq < count:
                if seq % 5 == 4 and (count == 0 or seq + 3 <= count):
                    ids = await rb.append_many([payload(tag, task, seq + k) for k in range(3)])
                else:
                    ids = [await rb.append(payload(tag, task, seq))]
                out.write(b"".join(b"%d %d %d\n" % (i, task, seq + k) for k, i in enumerate(ids)))
                out.flush()
                seq += len(ids)

        await asyncio.gather(*(worker(t) for t in range(tasks)))


if __name__ == "__main__":
    path, durability, tasks, count, tag = sys.argv[1:6]
    asyncio.run(main(path, durability, int(tasks), int(count), tag))
