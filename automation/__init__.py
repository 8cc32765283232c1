"""The application: the `automation` command and the composition of every process. The only package
that imports all the others (shared <- ai <- consumers; shared <- producers, scheduler; all <- automation)."""
