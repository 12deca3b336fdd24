"""The study's report: the runs it reads (``runs``), its tables (``tables``), its pictures
(``plots``), names made safe for Markdown (``markdown``), the search's section (``search_section``)
and REPORT.md (``document``)."""
