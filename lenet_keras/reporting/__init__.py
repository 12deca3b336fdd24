"""The study's report: the runs it reads (``runs``), its tables (``tables``), its pictures
(``plots``) and REPORT.md (``document``)."""
