"""What a QPU job leaves behind: its record and the compact form kept in the job's AdminComment. Standard
library only (the hooks read it)."""
