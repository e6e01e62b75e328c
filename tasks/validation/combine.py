"""On the driver: the partition results summed into dataset totals, and the checks on those totals."""

from __future__ import annotations

from typing import Any

from tasks.validation.records import BadValues, Outcome, PartitionResult, ReportRow, SuitePlan, Totals
from tasks.validation.values import examples, merge_examples, plain


def combine(partials: list[PartitionResult], plan: SuitePlan) -> Totals:
    """Sum the partition partials into dataset totals and per-expectation results."""
    nulls: dict[str, int] = {}
    ranges: dict[str, list[Any] | None] = {}
    categories: dict[str, set[str]] = {c: set() for c in plan.categorical}
    truncated: set[str] = set()
    classes: dict[str, int] = {}
    coerced: dict[str, BadValues] = {}
    infinite: dict[str, BadValues] = {}
    for p in partials:
        for col, bad in p.infinite.items():
            total = infinite.setdefault(col, BadValues())
            total.count += bad.count
            total.examples = merge_examples(total.examples, bad.examples)
        for col, n in p.nulls.items():
            nulls[col] = nulls.get(col, 0) + n
        for col, span in p.numeric_ranges.items():
            if span is None:
                ranges.setdefault(col, None)
            elif ranges.get(col) is None:
                ranges[col] = list(span)
            else:
                ranges[col] = [min(ranges[col][0], span[0]), max(ranges[col][1], span[1])]
        for col, values in p.categories.items():
            categories[col].update(values)
        truncated.update(p.truncated)
        for label, n in p.classes.items():
            classes[label] = classes.get(label, 0) + n
        for col, bad in p.coerced.items():
            total = coerced.setdefault(col, BadValues())
            total.count += bad.count
            total.examples = merge_examples(total.examples, bad.examples)
    for col in list(categories):
        if len(categories[col]) > plan.category_cap:
            truncated.add(col)
    if len(classes) > plan.category_cap:
        truncated.add(plan.target)
        classes = dict(sorted(classes.items(), key=lambda kv: -kv[1])[: plan.category_cap])
    for col in plan.numeric:
        ranges.setdefault(col, None)
    return Totals(
        rows=sum(p.rows for p in partials),
        nulls=nulls,
        numeric_ranges=ranges,
        categories={c: sorted(v)[: plan.category_cap] for c, v in categories.items()},
        categories_truncated=sorted(truncated),
        classes=dict(sorted(classes.items())),
        coerced=coerced,
        results=[_expectation_result(i, plan, partials) for i in range(len(plan.expectations))] + [
            result_row("expect_column_values_to_be_finite", col, {"column": col}, False, unexpected=bad.count, examples_=bad.examples)
            for col, bad in infinite.items()
        ],
        infinite=infinite,
    )


def _expectation_result(index: int, plan: SuitePlan, partials: list[PartitionResult]) -> ReportRow:
    item = plan.expectations[index]
    outcomes: list[Outcome] = [o for p in partials if p.outcomes and (o := p.outcomes[index]) is not None]
    kwargs = item.kwargs
    errors = [o.error for o in outcomes if o.error]
    unexpected = sum(o.unexpected_count for o in outcomes)
    found: list[Any] = []
    for o in outcomes:
        found = merge_examples(found, o.examples)
    observed = None
    if item.map:
        nonmissing = sum(o.element_count - o.missing_count for o in outcomes)
        mostly = kwargs.get("mostly")
        if mostly is not None and nonmissing:
            success = (nonmissing - unexpected) / nonmissing >= float(mostly)
        else:
            success = unexpected == 0
    else:  # schema-level: the same on every partition
        failing = [o for o in outcomes if not o.success]
        success = not failing
        observed = (failing or outcomes)[0].observed if (failing or outcomes) else None
    return result_row(
        item.type, column_of(kwargs), kwargs, success and not errors,
        unexpected=unexpected, examples_=found, observed=observed, error=errors[0] if errors else None,
    )


def global_results(totals: Totals, plan: SuitePlan, schema: dict[str, Any], expectations: dict[str, Any]) -> list[ReportRow]:
    """Properties of the whole dataset: its row count, the target's classes, or a numeric target."""
    target, task, columns = schema["target"], schema["task"], schema["columns"]
    rows = totals.rows
    min_rows = int(expectations.get("min_rows", 1))
    results = [
        result_row(
            "expect_table_row_count_to_be_between", None, {"min_value": min_rows, "max_value": None},
            rows >= min_rows and rows > 0, observed=rows,
        )
    ]
    if plan.classification:
        classes = sorted(totals.classes)
        results.append(
            result_row(
                "expect_target_to_have_two_or_more_classes", target, {"column": target, "min_value": 2},
                len(classes) >= 2, examples_=classes, observed=len(classes),
            )
        )
        if task == "binary" and len(classes) > 2:
            results.append(
                result_row(
                    "expect_binary_target_to_have_two_classes", target, {"column": target, "value": 2},
                    False, examples_=classes, observed=len(classes),
                )
            )
    else:
        bad = totals.coerced.get(target, BadValues())
        results.append(
            result_row(
                "expect_target_to_be_numeric", target, {"column": target},
                target not in plan.coerce and target in plan.numeric and bad.count == 0,
                unexpected=bad.count, examples_=bad.examples, observed=columns[target]["kind"],
            )
        )
    return results


def column_of(kwargs: dict[str, Any]) -> str | None:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs and "column_B" in kwargs:
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    if kwargs.get("column_list"):
        return ",".join(map(str, kwargs["column_list"]))
    return None


def result_row(
    expectation: str,
    column: str | None,
    kwargs: dict[str, Any],
    success: bool,
    unexpected: int = 0,
    examples_: list[Any] | None = None,
    observed: Any = None,
    error: str | None = None,
) -> ReportRow:
    """One row of the report's results."""
    return {
        "expectation": expectation,
        "column": column,
        "kwargs": plain(kwargs),
        "success": bool(success),
        "unexpected_count": int(unexpected),
        "examples": examples(examples_ or []),
        "observed": plain(observed),
        "error": error,
    }
