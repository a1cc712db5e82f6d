// Module NotifierService.
