"""Console: the duty desk in the browser — accounts, sessions, the approval flow, pages.

`gateway.console.web` wires it into the app (`/console/`, the person routes of the
API); the approval flow (`approval`) is also used by ingest, so this package's modules
import aiohttp only where they serve pages.
"""
