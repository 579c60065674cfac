"""Coverage: an alert's figures as they are kept for periodic statistics — aggregates
only (no recipient, no household), so they outlive the per-recipient data."""

from __future__ import annotations

from typing import Any

from gateway.models import AlertRecord

__all__ = ["figures_of"]


def figures_of(record: AlertRecord, report: dict[str, Any]) -> dict[str, Any]:
    """What `warngate report --period` needs of one alert, from its coverage report."""
    t = report.get("target", {})
    v2 = report.get("definition") == "warngate-coverage-v2"
    areas = []
    for tier, rows in (report.get("rollups") or {}).items():
        for row in rows:
            areas.append(
                {
                    "tier": tier,
                    "code": row["code"],
                    "population": row["population"],
                    "delivered": row.get("delivered", row.get("coverage", 0.0)),
                    "informed": row.get("informed"),
                    "informed_interval": row.get("informed_interval"),
                }
            )
    return {
        "alert": record.id,
        "identifier": record.alert.identifier,
        "agency": record.agency,
        "accepted": record.received.isoformat(),
        "msgType": record.alert.msgType.value,
        "status": record.alert.status.value,
        "live": not record.exercise,
        "level": record.level.value,
        "hazards": list(record.hazards),
        "definition": report.get("definition"),
        "units": len(report.get("units", [])),
        "population": report.get("population", 0),
        "delivered": report.get("delivered", report.get("coverage", 0.0)),
        "delivered_estimate": report.get("delivered_estimate"),
        "informed": report.get("informed") if v2 else None,
        "informed_interval": report.get("informed_interval") if v2 else None,
        "target": t.get("binding"),
        "expected": t.get("expected"),
        "deadline_minutes": t.get("deadline_minutes"),
        "delivered_at_deadline": t.get("delivered_at_deadline", t.get("coverage_at_deadline")),
        "informed_at_deadline": t.get("informed_at_deadline"),
        "verdict": t.get("verdict"),
        "expected_verdict": t.get("expected_verdict"),
        "informed_verdict": t.get("informed_verdict"),
        "time_to_target": report.get("time_to_target"),
        "areas": areas,
        "surveyed_households": (report.get("surveys") or {}).get("households", 0),
        "registry_suspect": report.get("registry_suspect", []),
        "escalations": len(report.get("escalations", [])),
    }
