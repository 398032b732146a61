"""Foundation every other package may use: the error tree, units, secrets, key files, atomic files and locks.
Imports nothing else of qauvern_hpc."""
