"""The uses of registered models, one module per job: generate, embed, classify, similar/compare.

Every function here takes ``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``)
and loads the model through the registry's models-from-code path: nothing is
unpickled. Commands live in :mod:`vidgen_core.uses.commands`.
"""
