"""Building a notebook cell by cell: execution counts, outputs, and the filler cells between the stages."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any


class NotebookBuilder:
    """Cells in order; code cells get sequential execution counts and (optionally) outputs."""

    def __init__(self, seed: int, outputs: bool) -> None:
        from nbformat.v4 import new_code_cell, new_markdown_cell

        self._code, self._md = new_code_cell, new_markdown_cell
        self.rng = random.Random(seed)
        self.outputs = outputs
        self.cells: list[Any] = []
        self.kinds: Counter[str] = Counter()
        self.ways: Counter[str] = Counter()  # how stage cells get their stage
        self.count = 0

    def md(self, text: str) -> None:
        self.cells.append(self._md(text.strip("\n"), id=f"md-{len(self.cells):03d}"))

    def code(
        self,
        kind: str,
        text: str,
        tags: list[str] | None = None,
        way: str | None = None,
        display: str | None = None,
        stream: str | None = None,
    ) -> None:
        self.count += 1
        metadata: dict[str, Any] = {"tags": tags} if tags else {}
        cell = self._code(text.strip("\n"), id=f"{kind.replace('_', '-')}-{self.kinds[kind]:02d}", metadata=metadata)
        cell.execution_count = self.count
        if self.outputs:
            from nbformat.v4 import new_output

            if stream:
                cell.outputs.append(new_output("stream", name="stdout", text=stream))
            if display:
                cell.outputs.append(new_output("execute_result", data=self._table(display), execution_count=self.count))
        self.cells.append(cell)
        self.kinds[kind] += 1
        if way:
            self.ways[way] += 1

    def _table(self, title: str) -> dict[str, str]:
        """A df.head()-like result: text/plain and text/html of 5 rows x 6 columns."""
        cols = ["tx_id", "cc_num", "ts", "amount", "category", "is_fraud"]
        rows = [
            [
                str(1000 + i),
                str(self.rng.randint(1, 1000)),
                f"2026-01-{1 + i:02d} {self.rng.randint(0, 23):02d}:{self.rng.randint(0, 59):02d}:00+00:00",
                f"{self.rng.uniform(1, 500):.2f}",
                self.rng.choice(["grocery", "fuel", "online", "travel"]),
                str(self.rng.random() < 0.03),
            ]
            for i in range(5)
        ]
        plain = "\n".join(["   " + "  ".join(cols)] + [f"{i}  " + "  ".join(r) for i, r in enumerate(rows)])
        html = (
            f'<div><!-- {title} --><table border="1" class="dataframe"><thead><tr><th></th>'
            + "".join(f"<th>{c}</th>" for c in cols)
            + "</tr></thead><tbody>"
            + "".join(f"<tr><th>{i}</th>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for i, r in enumerate(rows))
            + "</tbody></table></div>"
        )
        return {"text/plain": plain, "text/html": html}


class Fillers:
    """The cells spread between the stage cells: untagged support cells and exploration cells tagged ``skip``."""

    def __init__(self, b: NotebookBuilder, n: dict[str, int], extra_names: list[str]) -> None:
        self.b = b
        # -- misc untagged support cells: displays, %%time lookup tables, prints
        self.misc = [
            "%%time\nMERCHANT_RISK = {c: round(0.01 + 0.02 * i, 3) for i, c in enumerate(CATEGORIES)}",
            'print(f"store at {store.root}")',
            '%%time\nHOLIDAYS = pd.to_datetime(["2026-01-01", "2026-04-03", "2026-12-25"], utc=True)',
            "np.__version__, pd.__version__",
            'CURRENCY_RATES = json.loads(\'{"EUR": 1.0, "USD": 0.92, "GBP": 1.17}\')',
        ]
        self.misc_done = 0
        self.skip_left = n["skip"]
        self.skip_texts = [
            "raw_{b}.head()",
            "raw_{b}.describe()",
            'raw_{b}["amount"].hist(bins=50)',
            'plot_distribution_0(raw_{b}, "amount")' if "plot_distribution_0" in extra_names else "raw_{b}.info()",
            'display(raw_{b}.groupby("category")["is_fraud"].mean().sort_values())',
            (
                'raw_{b}.assign(night=raw_{b}["ts"].dt.hour < NIGHT_END_HOUR).pivot_table(\n'
                '    index="night", columns="category", values="is_fraud", aggfunc="mean"\n).round(3)'
            ),
        ]
        self.skip_i = 0

    def misc_cell(self, i: int) -> None:
        self.b.code("misc", self.misc[i % len(self.misc)], display="versions" if i % len(self.misc) == 3 else None)

    def skip_cell(self, var: str) -> None:
        if self.skip_left <= 0:
            return
        text = "# Exploration only.\n" + self.skip_texts[self.skip_i % len(self.skip_texts)].format(b=var)
        self.b.code("skip", text, tags=["skip"], display="exploration")
        self.skip_left -= 1
        self.skip_i += 1
