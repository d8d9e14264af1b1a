"""Progress reporting from the library; the CLI renders it (rich), the library only calls back."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, phase: str, total: int, unit: str = "B") -> None: ...
    def advance(self, phase: str, amount: int) -> None: ...
    def end(self, phase: str) -> None: ...
    def log(self, message: str) -> None: ...


class NoProgress:
    def start(self, phase: str, total: int, unit: str = "B") -> None:
        pass

    def advance(self, phase: str, amount: int) -> None:
        pass

    def end(self, phase: str) -> None:
        pass

    def log(self, message: str) -> None:
        pass
