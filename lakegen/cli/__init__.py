"""The command line: parsing and printing only (:mod:`.main` registers the commands; the other modules
hold groups of them).
"""
