from evo_nas.cli import entry

entry()
