"""The run plan, below both the study and the launcher (no JAX, no XManager).

`spec.RunSpec` is one arm × seed; `plan.build_plan` turns RunSpecs into work
units whose train and eval `Job.argv()` every executor runs verbatim: the
local study runner (`sftdiff.study.runner`), XManager local/Vertex
(`sftdiff.launch.xm_jobs`) and the GKE JobSet writer (`sftdiff.launch.jobset`).
"""
